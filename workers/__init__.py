"""The build pipeline: Celery tasks, one per step, and the cluster backends they drive."""
