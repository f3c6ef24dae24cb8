"""What every service process needs, built once from the settings: database engine and
sessions, and the artifact store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gisp_service.core.artifacts import ArtifactStore
from gisp_service.core.settings import Settings
from gisp_service.db.session import make_engine, make_sessionmaker


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.db_url)
        return cls(settings, engine, make_sessionmaker(engine), ArtifactStore(settings.artifacts_dir))
