"""Models shared by the webhook receiver and the workers.

House rule: this package imports nothing else of ours, so both sides (and tests) can depend on it
without pulling in Celery, Redis or Kubernetes.
"""
