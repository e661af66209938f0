"""Sending work to the workers: the Celery app's configuration, one message per build step, and the
reconciler that re-sends a lost one. Nothing here runs a step, so the receiver and the CLI can send
without importing the worker stack."""
