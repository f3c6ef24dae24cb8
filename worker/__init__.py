"""The Celery side: the app, the one task (it carries only a job id) and the reconciler. The
work itself is in `worker.runner`, a plain function the task calls."""
