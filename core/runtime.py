"""What every service process needs, built from the settings: the database engine and its
sessions, the artifact store and the Celery app (the broker client). The API builds one per app,
the worker one per process that runs tasks and one for its reconciler thread: a runtime holds a
connection pool, and a pool belongs to the process (and the thread of work) that built it."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gisp_service.core.artifacts import ArtifactStore
from gisp_service.core.queue import make_celery
from gisp_service.core.settings import Settings
from gisp_service.db.session import make_engine, make_sessionmaker, read_engine


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    # write transactions (`db.session.write_transaction`); used without begin(), a read
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]  # only reads (`db.session.read_session`); the same pool
    store: ArtifactStore
    celery: Celery

    @classmethod
    def build(cls, settings: Settings, celery: Celery | None = None, pool_size: int = 5) -> Runtime:
        """`celery`: the app to send with (the worker passes its own); a new one otherwise.
        `pool_size`: database connections this process may hold at once."""
        engine = make_engine(settings.db_url, pool_size=pool_size)
        return cls(
            settings,
            engine,
            make_sessionmaker(engine),
            make_sessionmaker(read_engine(engine), read_unless_begun=False),
            ArtifactStore(settings.artifacts_dir),
            celery if celery is not None else make_celery(settings),
        )

    def close(self) -> None:
        self.engine.dispose()

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's pool without touching its connections, which the
        parent still uses (SQLAlchemy's pooling guide for os.fork: `dispose(close=False)`)."""
        self.engine.dispose(close=False)
