"""Request dependencies: the service context, a database session per request, and the tenant
behind the API key (every query is scoped by it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gisp_service.api.errors import ApiProblem
from gisp_service.core.runtime import Runtime
from gisp_service.db.repos import tenants as tenant_repo
from gisp_service.db.session import transaction


@dataclass
class ServiceContext:
    """What a request handler reaches: the app's runtime (database, store, Celery app)."""

    rt: Runtime

    @property
    def celery(self) -> Celery:
        return self.rt.celery


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


def get_session(ctx: ServiceContext = Depends(get_ctx)) -> Iterator[Session]:
    """A session for reads. Handlers that write open their own `transaction` and commit it before
    they respond (and before they enqueue), so nothing is reported done that is not committed."""
    with ctx.rt.sessions() as session, session.begin():
        yield session


def current_tenant(request: Request, ctx: ServiceContext = Depends(get_ctx)) -> str:
    """The tenant id of the request's API key (`Authorization: Bearer <key>`); 401 otherwise.

    Its own short transaction: SQLite takes the write lock at BEGIN, so sessions never nest."""
    with transaction(ctx.rt.sessions) as session:
        return _tenant(request, ctx, session)


def _tenant(request: Request, ctx: ServiceContext, session: Session) -> str:
    if ctx.rt.settings.auth == "off":
        return tenant_repo.get_or_create(session, tenant_repo.DEFAULT_TENANT).id
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="gisp"'}
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiProblem(401, "missing API key: send Authorization: Bearer <key>", "Authorization", headers=challenge)
    tenant = tenant_repo.tenant_for_key(session, key.strip())
    if tenant is None:
        raise ApiProblem(401, "invalid API key", "Authorization", headers=challenge)
    return tenant.id
