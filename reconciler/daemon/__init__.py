"""The reconcile daemon: a loop that plans and applies every configuration
periodically, with Prometheus metrics, a health check and structured logs.

    loop     the tick/sleep loop (one configuration's failure never blocks another)
    clock    real and virtual time (tests run days of schedule in seconds)
    due      when the next scheduled backup falls due
    metrics  the Prometheus metrics, in the daemon's own registry
    health   liveness, and the HTTP server for /metrics and /healthz
    logs     one line per event, as text or JSON, with secrets masked
"""
