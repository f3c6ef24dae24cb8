"""Which models a job may name, decided at submit: the operator's allow-list
(GISP_ALLOWED_MODELS: `local` for every model under GISP_MODEL_ROOTS, hub ids or fnmatch
patterns such as `HuggingFaceTB/*`, `*` for any hub id), and for a hub id a short, cached HEAD
against the hub (GISP_HUB_URL; empty: no hub, nothing is fetched), so that an id that does not
exist is refused at once instead of occupying a worker while it retries the network. The worker's
own hub access gets the same endpoint and timeout (`worker_hub_environment`)."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import httpx

from gisp_service.core import model_refs
from gisp_service.core.settings import Settings

log = logging.getLogger("gisp.api")
LOCAL = "local"
FOUND_SECONDS = 3600.0  # how long a hub answer is remembered
MISSING_SECONDS = 300.0
CACHE_SIZE = 10_000


class ModelRefused(ValueError):
    pass


@dataclass
class ModelPolicy:
    allowed: list[str]
    roots: list[Path]
    hub_url: str = ""
    timeout: float = 3.0
    known: dict[str, tuple[bool, float]] = field(default_factory=dict)  # id -> (exists, monotonic expiry)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelPolicy:
        allowed = [p.strip() for p in settings.allowed_models.split(",") if p.strip()]
        return cls(allowed, settings.model_root_paths, settings.hub_url.rstrip("/"), settings.hub_timeout)

    def check(self, name: str) -> None:
        """Raise ModelRefused (a message for the client) unless the model may be used."""
        model_refs.check(name, self.roots)  # the shape: never a path
        local = model_refs.local_folder(name, self.roots) is not None
        if local:
            if LOCAL not in self.allowed and not self._listed(name):
                raise ModelRefused(f"local model {name!r} is not allowed here (GISP_ALLOWED_MODELS)")
            return
        if not self._listed(name):
            listed = ", ".join(p for p in self.allowed if p != LOCAL) or "none"
            raise ModelRefused(
                f"hub model {name!r} is not allowed here; hub ids this service accepts: {listed} "
                f"(GISP_ALLOWED_MODELS), or a local model name"
            )
        if self.exists_on_hub(name) is False:
            raise ModelRefused(f"hub model {name!r} does not exist on {self.hub_url} (or is not public)")

    def _listed(self, name: str) -> bool:
        return any(p != LOCAL and fnmatchcase(name, p) for p in self.allowed)

    def exists_on_hub(self, name: str) -> bool | None:
        """True or False as the hub answers a HEAD of the model's config.json; None when there
        is no hub to ask or it did not answer in time (the worker will find out)."""
        if not self.hub_url:
            return None
        remembered = self.known.get(name)
        if remembered is not None and remembered[1] > time.monotonic():
            return remembered[0]
        try:
            response = httpx.head(f"{self.hub_url}/{name}/resolve/main/config.json", timeout=self.timeout)
        except httpx.HTTPError as exc:
            log.warning("hub check of %s failed (%s); accepting it, the worker will find out", name, exc)
            return None
        if response.status_code in (401, 403, 404):
            exists = False
        elif response.status_code < 400:
            exists = True
        else:
            return None
        if len(self.known) >= CACHE_SIZE:
            self.known.clear()
        self.known[name] = (exists, time.monotonic() + (FOUND_SECONDS if exists else MISSING_SECONDS))
        return exists


def worker_hub_environment(settings: Settings) -> None:
    """Bound the worker's hub access before huggingface_hub is imported: the same endpoint the
    API checks against, a metadata timeout of GISP_HUB_TIMEOUT, and offline when there is no hub.
    Variables the operator set explicitly win."""
    if not settings.hub_url:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return
    seconds = max(1, math.ceil(settings.hub_timeout))  # huggingface_hub reads whole seconds
    os.environ.setdefault("HF_ENDPOINT", settings.hub_url.rstrip("/"))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(seconds))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(max(seconds, 10)))
