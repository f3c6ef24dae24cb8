"""Persistence of the service: settings, SQLAlchemy models and sessions, Alembic migrations,
one repository module per domain (all SQL lives there) and the artifact store."""
