"""The planning rules, each a pure function of the desired state, the observed
state and a time: when a backup is due, what retention deletes, what
verification checks, what a rewrap moves, what a migration copies, how healthy
the certificate is, which settings changed, and when the catalog's head is
enough to plan from. No rule does I/O; plan.py composes them into a plan, and
the daemon asks the schedule rule when to wake."""
