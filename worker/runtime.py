"""The worker process's runtime (database, artifact store), built once."""

from __future__ import annotations

import threading
from functools import lru_cache

from gisp_service.core.runtime import Runtime
from gisp_service.core.settings import get_settings


@lru_cache
def runtime() -> Runtime:
    return Runtime.build(get_settings())


# Set when the worker process begins to shut down (SIGTERM, Ctrl-C): the running job stops at its
# next step and goes back to the queue, to be resumed from its trajectory.
SHUTTING_DOWN = threading.Event()
