"""Dashboard sign-in: the API key itself is the session, kept in an HttpOnly, SameSite=Strict
cookie limited to /ui (never in a URL or in script-readable storage) and checked against the key
table on every request, so revoking a key signs its sessions out. Form posts also carry a CSRF
token derived from the key (an attacker's page can neither read the cookie nor compute it)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

from gisp_service.api.deps import ServiceContext
from gisp_service.db.repos import tenants as tenant_repo
from gisp_service.db.session import transaction

COOKIE = "gisp_ui_key"
PATH = "/ui"
MAX_AGE = 12 * 3600


def sign_in_required() -> HTTPException:
    """A redirect to the sign-in page (htmx requests follow it too: HX-Redirect)."""
    return HTTPException(
        303, "sign in with an API key", headers={"Location": f"{PATH}/signin", "HX-Redirect": f"{PATH}/signin"}
    )


def csrf_token(key: str) -> str:
    return hmac.new(key.encode(), b"gisp-ui-csrf", hashlib.sha256).hexdigest()[:32]


def tenant_of(ctx: ServiceContext, key: str | None) -> tuple[str, str] | None:
    """(tenant id, tenant name) for a key, or None."""
    with transaction(ctx.rt.sessions) as session:
        if ctx.rt.settings.auth == "off":
            tenant = tenant_repo.get_or_create(session, tenant_repo.DEFAULT_TENANT)
            return tenant.id, tenant.name
        if not key:
            return None
        tenant = tenant_repo.tenant_for_key(session, key)
        return (tenant.id, tenant.name) if tenant is not None else None


class UiSession:
    def __init__(self, tenant_id: str, tenant_name: str, key: str) -> None:
        self.tenant_id, self.tenant_name, self.csrf = tenant_id, tenant_name, csrf_token(key)

    def check_csrf(self, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf):
            raise HTTPException(403, "the form's CSRF token does not match this session; reload the page")


def ui_session(request: Request) -> UiSession:
    """The signed-in tenant of a dashboard request; a redirect to the sign-in page otherwise."""
    ctx: ServiceContext = request.app.state.ctx
    key = request.cookies.get(COOKIE) or ""
    found = tenant_of(ctx, key)
    if found is None:
        raise sign_in_required()
    return UiSession(found[0], found[1], key)


def set_cookie(response, key: str, secure: bool) -> None:
    response.set_cookie(COOKIE, key, max_age=MAX_AGE, path=PATH, httponly=True, samesite="strict", secure=secure)


def clear_cookie(response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
