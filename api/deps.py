"""Request dependencies, as `Annotated` aliases for handlers to declare:

- `AppContext`: the app's runtime (database, store, Celery app);
- `ReadSession`: a session for reads (a deferred, read-only transaction: on SQLite it takes no
  lock, so reads go on beside the worker's writes); handlers that write open their own
  `write_transaction` and commit it before they respond (and before they enqueue);
- `TenantId`: the tenant behind the request's API key (every query is scoped by it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from gisp_service.api.errors import ApiProblem
from gisp_service.core.logging import bind_log_context
from gisp_service.core.model_policy import ModelPolicy
from gisp_service.core.runtime import Runtime
from gisp_service.db.repos import tenants as tenant_repo
from gisp_service.db.session import read_session, write_transaction

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gisp"'}
bearer = HTTPBearer(
    auto_error=False,  # a missing key is answered below, as problem+json with the challenge
    scheme_name="bearerAuth",
    description="An API key (`gisp admin create-key --tenant NAME`), sent as `Authorization: Bearer <key>`.",
)


KEY_CACHE_SECONDS = 10.0  # how long a valid key's tenant is remembered (a revoked key works that much longer)
KEY_CACHE_SIZE = 10_000


@dataclass
class ServiceContext:
    """What a request handler reaches: the app's runtime (database, store, Celery app)."""

    rt: Runtime
    models: ModelPolicy
    default_tenant_id: str | None = None  # GISP_AUTH=off: tenant 'default', looked up once
    # sha256 of a valid key -> (tenant id, monotonic expiry): a poll that comes every second does
    # not look its key up every second
    known_keys: dict[str, tuple[str, float]] = field(default_factory=dict)

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


async def current_tenant(
    request: Request,
    ctx: AppContext,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The tenant id of the request's API key; 401 otherwise. A key seen valid in the last
    KEY_CACHE_SECONDS is not looked up again; a lookup is its own short read session (one
    connection per request at a time, which is what the pool is sized for). The id is bound to
    the request's log lines, and the key's hash to the request's state (rate limits count by key)."""
    if ctx.rt.settings.auth == "off":
        tenant_id = await run_in_threadpool(_default_tenant, ctx)
        request.state.key_id = tenant_id
    else:
        key = credentials.credentials.strip() if credentials is not None else ""
        if not key:
            raise ApiProblem(
                401, "missing API key: send Authorization: Bearer <key>", "Authorization", headers=CHALLENGE
            )
        tenant_id = _remembered(ctx, key) or await run_in_threadpool(_tenant_for_key, ctx, key)
        if tenant_id is None:
            raise ApiProblem(401, "invalid API key", "Authorization", headers=CHALLENGE)
        request.state.key_id = tenant_repo.hash_key(key)[:32]
    bind_log_context(tenant_id=tenant_id)
    return tenant_id


TenantId = Annotated[str, Depends(current_tenant)]


def _remembered(ctx: ServiceContext, key: str) -> str | None:
    known = ctx.known_keys.get(tenant_repo.hash_key(key))
    return known[0] if known is not None and known[1] > time.monotonic() else None


def _tenant_for_key(ctx: ServiceContext, key: str) -> str | None:
    with read_session(ctx.rt.read_sessions) as session:
        tenant = tenant_repo.tenant_for_key(session, key)
        tenant_id = tenant.id if tenant is not None else None
    if tenant_id is not None:
        if len(ctx.known_keys) >= KEY_CACHE_SIZE:
            ctx.known_keys.clear()
        ctx.known_keys[tenant_repo.hash_key(key)] = (tenant_id, time.monotonic() + KEY_CACHE_SECONDS)
    return tenant_id


def _default_tenant(ctx: ServiceContext) -> str:
    if ctx.default_tenant_id is None:
        with write_transaction(ctx.rt.sessions) as session:
            ctx.default_tenant_id = tenant_repo.get_or_create(session, tenant_repo.DEFAULT_TENANT).id
    return ctx.default_tenant_id
