"""A small typed client for the gisp service's HTTP API (one method per endpoint of the contract).

Transport failures are retried only where a retry cannot duplicate work: GETs, and POSTs that carry
an Idempotency-Key. Downloads resume with `Range` + `If-Range` and are checked against the ETag.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx

from gisp_service.client import DEFAULT_URL, sse
from gisp_service.client.archive import etag_digest, extract_archive, verify_sha256
from gisp_service.client.errors import GispAPIError, GispClientError
from gisp_service.client.resources import TERMINAL, Checkpoint, CheckpointList, Dataset, Event, Job

EVENT_STREAM = "text/event-stream"
RETRIES = 3
# The first download of a checkpoint waits while the server builds it (a base-model load and an
# export), so the wait for the first byte is allowed to be much longer than for other calls.
DOWNLOAD_READ_TIMEOUT = 1800.0
# download format -> the media type the server sends it as
DOWNLOAD_FORMATS = {"hf": "application/x-tar", "gguf": "application/octet-stream"}


class GispClient:
    """`GispClient(url, api_key)`; use as a context manager or call `close()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> GispClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, retry: bool | None = None, **kwargs: Any) -> httpx.Response:
        """Send, retrying transport errors when safe; raise GispAPIError on a 4xx/5xx answer."""
        safe = method in ("GET", "HEAD") if retry is None else retry
        for attempt in range(RETRIES):
            try:
                response = self._http.request(method, path, **kwargs)
                break
            except httpx.ConnectError as exc:  # nothing reached the server: always safe to retry
                if attempt == RETRIES - 1:
                    raise GispClientError(f"cannot reach the gisp service at {self.url}: {exc}") from exc
            except httpx.TransportError as exc:
                if not safe or attempt == RETRIES - 1:
                    raise GispClientError(f"{method} {self.url}{path} failed: {exc!r}") from exc
            time.sleep(0.5 * 2**attempt)
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    def _pages(self, path: str, params: dict[str, Any], cursor: Callable[[dict[str, Any]], Any]) -> Iterator[Any]:
        """Yield the items of a `{"data", "has_more"}` list, following the `after` cursor."""
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self._json("GET", path, params=params)
            items = page.get("data", [])
            yield from items
            if not page.get("has_more") or not items:
                return
            params["after"] = cursor(items[-1])

    # -- health -----------------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("GET", "/healthz"))

    def ready(self) -> bool:
        """True when /readyz answers 200 (database and broker reachable)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    # -- datasets ---------------------------------------------------------------------------

    def upload_dataset(
        self, path: str | os.PathLike[str], name: str | None = None, columns: dict[str, str] | None = None
    ) -> Dataset:
        """Upload a calibration/evaluation file (.txt, .jsonl, or a table: .json, .csv, .parquet,
        .arrow, a zipped save_to_disk folder); the server validates it. `columns` maps the table's
        columns (`text_field`, `prompt_field`, ...)."""
        source = Path(path)
        if not source.is_file():
            raise GispClientError(f"data file {str(source)!r} does not exist")
        data = {**({"name": name} if name else {}), **(columns or {})} or None
        with source.open("rb") as fh:
            files = {"file": (source.name, fh, "application/octet-stream")}
            return cast(Dataset, self._json("POST", "/v1/datasets", files=files, data=data))

    def get_dataset(self, dataset_id: str) -> Dataset:
        return cast(Dataset, self._json("GET", f"/v1/datasets/{dataset_id}"))

    def list_datasets(self) -> Iterator[Dataset]:
        return self._pages("/v1/datasets", {}, lambda item: item["id"])

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # -- jobs -------------------------------------------------------------------------------

    def create_job(self, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """Submit a job (fields as in the contract: model, dataset_id, targets, ...).

        With an `idempotency_key`, transport failures are retried: the server answers a repeat
        with the job it already made.
        """
        body = {k: v for k, v in fields.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return cast(Job, self._json("POST", "/v1/jobs", json=body, headers=headers, retry=idempotency_key is not None))

    def get_job(self, job_id: str) -> Job:
        return cast(Job, self._json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, status: str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job of this tenant (newest first, as the server orders them), page by page."""
        return self._pages("/v1/jobs", {"status": status, "limit": page_size}, lambda item: item["id"])

    def cancel_job(self, job_id: str) -> Job:
        return cast(Job, self._json("POST", f"/v1/jobs/{job_id}/cancel", retry=True))

    def events(self, job_id: str, after: int = 0) -> list[Event]:
        """The job's events with `seq > after`, all pages."""
        return list(self._pages(f"/v1/jobs/{job_id}/events", {"after": after}, lambda item: item["seq"]))

    def event_stream(self, job_id: str, after: int = 0, reconnects: int = 3) -> Iterator[Event | None]:
        """The job's events live (Server-Sent Events), from `seq > after` until the job ends; None
        for each heartbeat. A dropped connection is resumed with Last-Event-ID. Raises
        StreamUnavailable when the answer is not an event stream (a proxy that strips it)."""
        last, failures = after, 0
        while True:
            headers = {"Accept": EVENT_STREAM, "Last-Event-ID": str(last)}
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _api_error(response)
                    if not response.headers.get("content-type", "").startswith(EVENT_STREAM):
                        raise StreamUnavailable(f"the server answered {response.headers.get('content-type')!r}")
                    for message in sse.messages(response.iter_lines()):
                        if not message.data:
                            yield None
                            continue
                        event = cast(Event, json.loads(message.data))
                        last = max(last, int(event["seq"]))
                        failures = 0
                        yield event
                return  # the server closes the stream after the job's last event
            except httpx.TransportError as exc:
                failures += 1
                if failures > reconnects:
                    raise StreamUnavailable(f"the event stream kept failing: {exc!r}") from exc
                time.sleep(0.5 * failures)

    def wait(
        self,
        job_id: str,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[Job], None] | None = None,
        stream: bool = True,
    ) -> Job:
        """Wait until the job reaches succeeded/failed/cancelled; `on_update` sees every change.

        Follows the job's event stream where the server (and any proxy) delivers one, and polls
        every `poll` seconds otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get_job(job_id)
        if on_update is not None:
            on_update(job)
        if job["status"] in TERMINAL:
            return job
        if stream:
            try:
                return self._follow(job, deadline, timeout, on_update)
            except StreamUnavailable:
                pass
        while True:
            job = self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            _check_deadline(job, deadline, timeout)
            time.sleep(poll)

    def _follow(
        self, job: Job, deadline: float | None, timeout: float | None, on_update: Callable[[Job], None] | None
    ) -> Job:
        for event in self.event_stream(job["id"]):
            if event is not None and event["type"] == "step":
                job["status"] = "running"
                job["progress"] = {**job.get("progress", {}), **_step_progress(event["data"])}
                if on_update is not None:
                    on_update(job)
            elif event is not None and event["type"] in ("finished", "error", "cancelled", "started", "checkpoint"):
                job = self.get_job(job["id"])
                if on_update is not None:
                    on_update(job)
                if job["status"] in TERMINAL:
                    return job
            _check_deadline(job, deadline, timeout)
        job = self.get_job(job["id"])
        if job["status"] not in TERMINAL:
            raise StreamUnavailable("the event stream ended before the job did")
        if on_update is not None:
            on_update(job)
        return job

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoints(self, job_id: str, page_size: int | None = None) -> CheckpointList:
        """The job's checkpoints, sorted by target sparsity, as a list whose `nested` says whether
        every one is a subnetwork of each less sparse one (the server's answer for the whole family)."""
        path = f"/v1/jobs/{job_id}/checkpoints"
        limit: dict[str, Any] = {} if page_size is None else {"limit": page_size}
        params = dict(limit)
        items: list[Checkpoint] = []
        nested = True
        while True:
            page = self._json("GET", path, params=params)
            data = page.get("data", [])
            items.extend(data)
            nested = nested and bool(page.get("nested", True))
            if not page.get("has_more") or not data:
                return CheckpointList(items, nested)
            params = {**limit, "after": data[-1]["id"]}

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        return cast(Checkpoint, self._json("GET", f"/v1/checkpoints/{checkpoint_id}"))

    def select(
        self,
        job_id: str,
        *,
        max_params: int | None = None,
        max_bytes: int | None = None,
        max_flops_per_token: int | None = None,
    ) -> Checkpoint:
        """The least-pruned checkpoint within every given bound (GispAPIError 404 when none fits)."""
        params = {"max_params": max_params, "max_bytes": max_bytes, "max_flops_per_token": max_flops_per_token}
        params = {k: v for k, v in params.items() if v is not None}
        if not params:
            raise GispClientError("select needs at least one of max_params, max_bytes, max_flops_per_token")
        return cast(Checkpoint, self._json("GET", f"/v1/jobs/{job_id}/checkpoints/select", params=params))

    def download(
        self,
        checkpoint_id: str,
        out: str | os.PathLike[str],
        *,
        format: str = "hf",
        on_progress: Callable[[int, int | None], None] | None = None,
        attempts: int = 5,
    ) -> Path:
        """Fetch the checkpoint's artifact and verify sha256 == ETag. `hf`: the tar, extracted into
        folder `out` (absent or empty); `gguf`: the GGUF file for llama.cpp, written as file `out`.

        The body is streamed to a temp file beside `out`; an interrupted transfer resumes from
        the bytes already on disk (`Range: bytes=N-` with `If-Range: <etag>`), and starts over if
        the server answers 200 because the representation changed.
        """
        if format not in DOWNLOAD_FORMATS:
            raise GispClientError(f"format must be one of {', '.join(DOWNLOAD_FORMATS)}, not {format!r}")
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                path = f"/v1/checkpoints/{checkpoint_id}/download" + ("" if format == "hf" else f"?format={format}")
                etag = self._fetch(path, fh, on_progress, attempts, DOWNLOAD_FORMATS[format])
                fh.flush()
                os.fsync(fh.fileno())
            expected = etag_digest(etag)
            if expected is None:
                raise GispClientError("the server sent no ETag, so the download cannot be verified")
            verify_sha256(part, expected)
            if format == "hf":
                return extract_archive(part, out)
            os.replace(part, out)
            return out
        finally:
            Path(part).unlink(missing_ok=True)

    def _fetch(
        self,
        path: str,
        fh: Any,
        on_progress: Callable[[int, int | None], None] | None,
        attempts: int,
        accept: str = "application/x-tar",
    ) -> str | None:
        """Stream `path` into `fh`, resuming on transport errors; returns the ETag."""
        etag: str | None = None
        total: int | None = None
        received = 0
        for attempt in range(attempts):
            headers = {"Accept": accept}
            if received and etag:
                headers.update({"Range": f"bytes={received}-", "If-Range": etag})
            try:
                timeout = httpx.Timeout(self._http.timeout.connect, read=DOWNLOAD_READ_TIMEOUT)
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _api_error(response)
                    if response.status_code == 206 and received:
                        start, total = _content_range(response.headers.get("content-range"))
                        if start != received:
                            raise GispClientError(f"server resumed at byte {start}, expected {received}")
                    else:  # a full body: first request, or the archive changed since the first one
                        fh.seek(0)
                        fh.truncate()
                        received = 0
                        etag = response.headers.get("etag")
                        length = response.headers.get("content-length")
                        total = int(length) if length is not None else None
                    for block in response.iter_bytes():  # no chunk_size: a buffered tail would be lost on a cut
                        fh.write(block)
                        received += len(block)
                        if on_progress is not None:
                            on_progress(received, total)
                if total is None or received >= total:
                    return etag
                error: Exception = GispClientError(f"connection closed after {received} of {total} bytes")
            except httpx.TransportError as exc:
                error = exc
            if not etag:  # no validator, so a Range request could splice two different archives
                received = 0
            if attempt < attempts - 1:
                time.sleep(min(0.25 * 2**attempt, 4.0))
        raise GispClientError(f"download of {path} failed after {attempts} attempts: {error}")


def _api_error(response: httpx.Response) -> GispAPIError:
    return GispAPIError.from_response(
        response.status_code, response.content, response.headers.get("content-type", ""), response.reason_phrase
    )


def _content_range(value: str | None) -> tuple[int, int | None]:
    """(start, total) of a `Content-Range: bytes start-end/total` header."""
    try:
        unit, _, spec = (value or "").partition(" ")
        span, _, size = spec.partition("/")
        if unit != "bytes":
            raise ValueError(value)
        return int(span.split("-")[0]), (None if size in ("", "*") else int(size))
    except ValueError:
        raise GispClientError(f"unreadable Content-Range header {value!r} in a 206 answer") from None


def job_finished(job: Job) -> bool:
    return job["status"] in TERMINAL


class StreamUnavailable(GispClientError):
    """No usable event stream (a proxy stripped it, or it kept failing): the caller polls instead."""


def _check_deadline(job: Job, deadline: float | None, timeout: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise GispClientError(f"job {job['id']} still {job['status']} after {timeout:g} s")


def _step_progress(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in ("step", "total_steps", "sparsity", "loss") if k in data}
