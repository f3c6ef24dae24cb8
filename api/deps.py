"""Request dependencies, as `Annotated` aliases for handlers to declare:

- `AppContext`: the app's runtime (database, store, Celery app);
- `ReadSession`: a session for reads (a deferred, read-only transaction: on SQLite it takes no
  lock, so reads go on beside the worker's writes); handlers that write open their own
  `write_transaction` and commit it before they respond (and before they enqueue);
- `TenantId`: the tenant behind the request's API key (every query is scoped by it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from gisp_service.api.errors import ApiProblem
from gisp_service.core.logging import bind_log_context
from gisp_service.core.runtime import Runtime
from gisp_service.db.repos import tenants as tenant_repo
from gisp_service.db.session import read_session, write_transaction

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gisp"'}
bearer = HTTPBearer(
    auto_error=False,  # a missing key is answered below, as problem+json with the challenge
    scheme_name="bearerAuth",
    description="An API key (`gisp admin create-key --tenant NAME`), sent as `Authorization: Bearer <key>`.",
)


@dataclass
class ServiceContext:
    """What a request handler reaches: the app's runtime (database, store, Celery app)."""

    rt: Runtime
    default_tenant_id: str | None = None  # GISP_AUTH=off: tenant 'default', looked up once

    @property
    def celery(self) -> Celery:
        return self.rt.celery


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


AppContext = Annotated[ServiceContext, Depends(get_ctx)]


def get_read_session(ctx: AppContext) -> Iterator[Session]:
    with read_session(ctx.rt.read_sessions) as session:
        yield session


# closed when the handler returns (scope "function"), not after the response is sent: a slow
# client never holds a database connection
ReadSession = Annotated[Session, Depends(get_read_session, scope="function")]
get_session = get_read_session  # the name the routers use until they move to `ReadSession`


async def current_tenant(
    ctx: AppContext, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The tenant id of the request's API key; 401 otherwise. The lookup is its own short read
    session (one connection per request at a time, which is what the pool is sized for); the id
    is bound to the request's log lines."""
    if ctx.rt.settings.auth == "off":
        tenant_id = await run_in_threadpool(_default_tenant, ctx)
    else:
        key = credentials.credentials.strip() if credentials is not None else ""
        if not key:
            raise ApiProblem(
                401, "missing API key: send Authorization: Bearer <key>", "Authorization", headers=CHALLENGE
            )
        tenant_id = await run_in_threadpool(_tenant_for_key, ctx, key)
        if tenant_id is None:
            raise ApiProblem(401, "invalid API key", "Authorization", headers=CHALLENGE)
    bind_log_context(tenant_id=tenant_id)
    return tenant_id


TenantId = Annotated[str, Depends(current_tenant)]


def _tenant_for_key(ctx: ServiceContext, key: str) -> str | None:
    with read_session(ctx.rt.read_sessions) as session:
        tenant = tenant_repo.tenant_for_key(session, key)
        return tenant.id if tenant is not None else None


def _default_tenant(ctx: ServiceContext) -> str:
    if ctx.default_tenant_id is None:
        with write_transaction(ctx.rt.sessions) as session:
            ctx.default_tenant_id = tenant_repo.get_or_create(session, tenant_repo.DEFAULT_TENANT).id
    return ctx.default_tenant_id
