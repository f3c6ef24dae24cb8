"""Methods per path: `OPTIONS` answers 204 with an `Allow` that lists every method any route of
the path takes (Starlette's router would answer 405 naming only the first route's methods), and
a 405 carries the same full list (api/errors.py)."""

from __future__ import annotations

from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from gisp_service.api.errors import problem_response

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: object, path: str) -> list[str]:
    """Every method a route of `app` accepts at `path`, with OPTIONS; empty when no route matches.
    Asked through the routes' own matching (FastAPI nests included routers), mounts left out."""
    routes = [r for r in getattr(app, "routes", []) if not isinstance(r, Mount)]
    methods = set()
    for method in METHODS:
        scope = {"type": "http", "path": path, "root_path": "", "method": method, "headers": [], "query_string": b""}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            methods.add(method)
    return sorted(methods | {"OPTIONS"}) if methods else []


class Options:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            methods = allowed_methods(scope["app"], scope["path"])
            if methods:
                headers = {"Allow": ", ".join(methods), "Content-Length": "0"}
                await _empty(204, headers)(scope, receive, send)
                return
            await problem_response(404, f"no resource at {scope['path']}")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _empty(status: int, headers: dict[str, str]):
    from starlette.responses import Response

    return Response(status_code=status, headers=headers)
