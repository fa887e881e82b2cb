"""The reconcile loop: observe the storage, plan the difference, apply it."""
