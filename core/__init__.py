"""What every service process shares: settings, the runtime (database, artifact store, broker
client), the model-reference policy and logging. Neither HTTP nor Celery tasks live here."""
