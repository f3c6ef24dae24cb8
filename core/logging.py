"""Logging, set up once per process the same way for the API (uvicorn imports `api.app`), the
worker (Celery's `setup_logging` signal) and `gisp serve`.

Every stdlib logger (ours, uvicorn's, Celery's) goes through one handler on the root logger whose
formatter is structlog's: a JSON object per line (`GISP_LOG_FORMAT=json`, the default) or a
readable line (`console`). Context bound with `bind_log_context` (job_id, tenant_id, worker_id)
rides on every line logged in that context, whichever logger writes it.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

__all__ = ["bind_log_context", "bound_log_context", "clear_log_context", "configure_logging"]

bind_log_context = bind_contextvars
bound_log_context = bound_contextvars
clear_log_context = clear_contextvars

# loggers that install handlers of their own; theirs are removed so that they propagate to ours
OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.redirected")


def configure_logging(level: str | int = "INFO", fmt: str = "json") -> None:
    """Idempotent: a second call replaces the handler of the first."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _keep,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    handler.set_name("gisp")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "gisp"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (a test runner swaps it), like logging's last resort."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _drop_color_message(_logger, _name, event_dict):
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event_dict


def _keep(_logger, _name, event_dict):
    return event_dict  # the console renderer formats exceptions itself
