"""Service commands for the `gisp` CLI: `serve`, `admin create-key`, `db upgrade`. Imports stay
inside the commands so that `gisp prune` never pays for the service's dependencies, and a command
run without the service extra says which extra to install."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from gisp.cli import require_extra

SERVICE_MODULES = (
    "fastapi",
    "uvicorn",
    "celery",
    "sqlalchemy",
    "alembic",
    "pydantic_settings",
    "structlog",
    "prometheus_fastapi_instrumentator",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the API, one pruning worker and a webhook worker (embedded default)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)

    admin = subparsers.add_parser("admin", help="administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create_key = admin_sub.add_parser("create-key", help="create an API key for a tenant (made if new)")
    create_key.add_argument("--tenant", required=True)
    create_key.add_argument("--expires-in-days", type=float, default=None, help="the key stops working after this")
    create_key.set_defaults(func=_create_key)
    list_keys = admin_sub.add_parser("list-keys", help="list API keys (prefixes only: keys are stored hashed)")
    list_keys.add_argument("--tenant", default=None)
    list_keys.set_defaults(func=_list_keys)
    revoke = admin_sub.add_parser("revoke-key", help="revoke an API key (its id or prefix, from list-keys)")
    revoke.add_argument("key", help="the key's id (key_...) or its prefix (gisp_...)")
    revoke.set_defaults(func=_revoke_key)

    db = subparsers.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply database migrations").set_defaults(func=_db_upgrade)


def _db_upgrade(_args: argparse.Namespace) -> int:
    require_extra("service", *SERVICE_MODULES)
    from gisp_service.core.settings import get_settings
    from gisp_service.db.migrate import current, upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    print(f"database at revision {current(settings.db_url)}")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    from gisp_service.db.repos import tenants
    from gisp_service.db.session import write_transaction

    rt = _admin_runtime()
    expires = None
    if args.expires_in_days is not None:
        from datetime import UTC, datetime, timedelta

        expires = datetime.now(UTC) + timedelta(days=args.expires_in_days)
    with write_transaction(rt.sessions) as session:
        key = tenants.create_key(session, args.tenant, expires)
    until = f", valid until {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
    print(f"created an API key for tenant {args.tenant!r}{until}; it is shown once:", file=sys.stderr)
    print(key)
    return 0


def _admin_runtime():
    require_extra("service", *SERVICE_MODULES)
    from gisp_service.core.runtime import Runtime
    from gisp_service.core.settings import get_settings
    from gisp_service.db.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    return Runtime.build(settings)


def _list_keys(args: argparse.Namespace) -> int:
    from gisp_service.db.repos import tenants
    from gisp_service.db.session import read_session

    with read_session(_admin_runtime().read_sessions) as session:
        rows = tenants.list_keys(session, args.tenant)
        print(f"{'id':<30} {'tenant':<20} {'prefix':<13} {'created':<17} {'expires':<17} revoked")
        for key, tenant in rows:
            print(f"{key.id:<30} {tenant:<20} {key.prefix:<13} {_when(key.created_at):<17} "
                  f"{_when(key.expires_at):<17} {_when(key.revoked_at)}")  # fmt: skip
    return 0


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _revoke_key(args: argparse.Namespace) -> int:
    from gisp_service.db.repos import tenants
    from gisp_service.db.session import write_transaction

    try:
        with write_transaction(_admin_runtime().sessions) as session:
            key = tenants.revoke_key(session, args.key)
            key_id, prefix = key.id, key.prefix
    except LookupError as exc:
        print(f"gisp: error: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {key_id} ({prefix}...); the API stops accepting it within 10 s (its key cache)")
    return 0


def worker_command(queue: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "gisp_service.worker.app",
        "worker",
        "-Q",
        queue,
        "--concurrency",
        "1",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        # the database, not worker gossip, coordinates jobs: less broker traffic (the SQLite broker polls)
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def webhook_worker_command(queue: str, threads: int = 4) -> list[str]:
    """A worker for webhook deliveries: many at once in threads (they wait on the network), apart
    from the pruning worker, whose one slot a long job holds."""
    command = worker_command(queue)
    command[command.index("--concurrency") + 1] = str(threads)
    command[command.index("--pool") + 1] = "threads"
    return command


def _raise_exit(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def _serve(args: argparse.Namespace) -> int:
    require_extra("service", *SERVICE_MODULES)
    import uvicorn

    from gisp_service.api.supervisor import Supervisor
    from gisp_service.core.logging import configure_logging
    from gisp_service.core.settings import get_settings
    from gisp_service.db.migrate import upgrade

    os.environ["GISP_LOG_LEVEL"] = args.log_level.upper()  # the app, made when uvicorn asks for it, reads it
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)  # before the app starts: the app itself never migrates
    # uvicorn re-raises the signal that stopped it once it has shut down; turn SIGTERM into an
    # exception (as SIGINT already is) so that the worker below is always stopped too
    signal.signal(signal.SIGTERM, _raise_exit)
    supervisor = None
    if not args.no_worker:
        # a worker that dies is started again
        supervisor = Supervisor([worker_command(settings.queue), webhook_worker_command(settings.webhook_queue)])
        supervisor.start()
    try:
        config = uvicorn.Config(
            "gisp_service.api.app:app", host=args.host, port=args.port, log_level=args.log_level, log_config=None
        )  # log_config=None: uvicorn's loggers go through ours (configure_logging) instead of its own handlers
        uvicorn.Server(config).run()  # returns (or raises, see above) on Ctrl-C or SIGTERM
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0
