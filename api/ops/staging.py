"""Reclaiming the upload staging folder: a process killed while it received an upload leaves its
partial file in `uploads/.staging` (nothing else ever removes it). Each API process sweeps files
older than GISP_STAGING_MAX_AGE at start and then every quarter of that age, and counts what it
removed on /metrics (per process, like the HTTP metrics)."""

from __future__ import annotations

import asyncio
import logging

from anyio import to_thread
from prometheus_client import CollectorRegistry, Counter

from gisp_service.core.artifacts import ArtifactStore

log = logging.getLogger("gisp.api")
MAX_PERIOD = 600.0  # seconds: sweep at least this often, however long uploads may take


class StagingReclaimer:
    def __init__(self, store: ArtifactStore, max_age: float, registry: CollectorRegistry) -> None:
        self.store, self.max_age = store, max_age
        self.files = Counter(
            "gisp_staging_files_reclaimed", "Stale upload staging files deleted by this process", registry=registry
        )
        self.bytes = Counter(
            "gisp_staging_bytes_reclaimed",
            "Bytes of the stale staging files deleted",
            registry=registry,
        )

    def sweep(self) -> tuple[int, int]:
        files, size = self.store.reclaim_staging(self.max_age)
        if files:
            self.files.inc(files)
            self.bytes.inc(size)
            log.warning("reclaimed %d stale upload staging files (%d bytes)", files, size)
        return files, size

    async def run(self) -> None:
        """Sweep now and then periodically, off the event loop, until cancelled."""
        while True:
            try:
                await to_thread.run_sync(self.sweep)
            except Exception:
                log.exception("staging sweep failed")
            await asyncio.sleep(min(self.max_age / 4, MAX_PERIOD))
