"""Dataset logic: stream the upload to a staging file under the size limit, read it with the
engine's reader and the upload's column mapping (so a job never fails later on data the upload
accepted), then file the upload as sent and, for a table or a mapped .jsonl, the canonical .jsonl
that jobs read, each by sha256."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from gisp.data import Columns, read_records, write_records
from gisp.data.records import SUFFIXES, Record, data_format
from gisp.errors import DataFormatError
from gisp_service.api.errors import ApiProblem, found
from gisp_service.core.artifacts import ArtifactStore, UploadTooLarge
from gisp_service.db.ids import new_id
from gisp_service.db.models import Dataset
from gisp_service.db.repos import datasets as dataset_repo

ENGINE_FORMATS = ("txt", "jsonl")  # formats the engine reads as they are, when no mapping renames fields
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file


def check_declared_size(content_length: str | None, limit: int) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    if content_length and content_length.isdigit() and int(content_length) > limit + MULTIPART_OVERHEAD:
        raise ApiProblem(413, f"the upload is larger than the limit of {limit} bytes", "file")


def columns_of(mapping: dict[str, str | None]) -> Columns:
    try:
        return Columns.from_dict(mapping)
    except DataFormatError as exc:
        raise ApiProblem(422, exc.message, exc.field or "columns") from None


def upload(
    session: Session,
    store: ArtifactStore,
    tenant_id: str,
    stream: BinaryIO,
    filename: str,
    name: str | None,
    limit: int,
    columns: Columns | None = None,
) -> Dataset:
    columns = columns or Columns()
    suffix = PurePath(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise ApiProblem(
            422, f"unsupported file type {suffix or filename!r}; upload one of {', '.join(SUFFIXES)}", "file"
        )
    try:
        staged, sha256, size = store.save_upload(stream, limit, suffix)
    except UploadTooLarge as exc:
        raise ApiProblem(413, f"the upload is larger than the limit of {exc.limit} bytes", "file") from None
    try:
        fmt = data_format(staged)
        kind, records = read_records(staged, columns)
    except DataFormatError as exc:
        staged.unlink(missing_ok=True)
        message = exc.message + (f" (field {exc.field!r})" if exc.field and exc.field != "data" else "")
        raise ApiProblem(422, f"invalid dataset: {message}", "file") from None
    canonical_sha256, canonical_format = sha256, fmt
    if fmt not in ENGINE_FORMATS or columns.given():
        canonical_sha256, canonical_format = _store_canonical(store, records)
    store.commit_upload(staged, sha256, fmt)
    dataset = Dataset(
        id=new_id("ds"),
        tenant_id=tenant_id,
        name=(name or PurePath(filename).name)[:300],
        format=fmt,
        kind=kind,
        records=len(records),
        bytes=size,
        sha256=sha256,
        canonical_sha256=canonical_sha256,
        canonical_format=canonical_format,
        columns=columns.given(),
    )
    return dataset_repo.add(session, dataset)


def _store_canonical(store: ArtifactStore, records: list[Record]) -> tuple[str, str]:
    """The records as the engine's canonical .jsonl, filed by its own sha256."""
    staged, sha256, _ = store.stage_file(lambda handle: write_records(handle, records), ".jsonl")
    store.commit_upload(staged, sha256, "jsonl")
    return sha256, "jsonl"


def get(session: Session, tenant_id: str, dataset_id: str) -> Dataset:
    return found(dataset_repo.get(session, tenant_id, dataset_id), "dataset", dataset_id, "dataset_id")


def page(session: Session, tenant_id: str, limit: int, after: str | None) -> dict[str, Any]:
    """A page as the `Page[DatasetOut]` response reads it."""
    rows, more = dataset_repo.page(session, tenant_id, limit, after)
    return {"data": rows, "has_more": more}


def delete(session: Session, tenant_id: str, dataset_id: str) -> None:
    dataset = get(session, tenant_id, dataset_id)
    if dataset_repo.in_use(session, dataset.id):
        raise ApiProblem(409, f"dataset {dataset_id!r} is used by a queued or running job", "dataset_id")
    dataset_repo.soft_delete(session, dataset)
