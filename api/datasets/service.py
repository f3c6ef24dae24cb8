"""Dataset logic: stream the upload to a staging file under the size limit, validate it with the
engine's reader (so a job never fails later on data the upload accepted), file it by sha256."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from gisp.data import inspect_dataset
from gisp.errors import DataFormatError
from gisp_service.api.errors import ApiProblem, found
from gisp_service.core.artifacts import ArtifactStore, UploadTooLarge
from gisp_service.db.ids import new_id
from gisp_service.db.models import Dataset
from gisp_service.db.repos import datasets as dataset_repo

SUFFIXES = (".txt", ".jsonl")
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file


def check_declared_size(content_length: str | None, limit: int) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    if content_length and content_length.isdigit() and int(content_length) > limit + MULTIPART_OVERHEAD:
        raise ApiProblem(413, f"the upload is larger than the limit of {limit} bytes", "file")


def upload(
    session: Session,
    store: ArtifactStore,
    tenant_id: str,
    stream: BinaryIO,
    filename: str,
    name: str | None,
    limit: int,
) -> Dataset:
    suffix = PurePath(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise ApiProblem(422, f"unsupported file type {suffix or filename!r}; upload a .txt or .jsonl file", "file")
    try:
        staged, sha256, size = store.save_upload(stream, limit, suffix)
    except UploadTooLarge as exc:
        raise ApiProblem(413, f"the upload is larger than the limit of {exc.limit} bytes", "file") from None
    try:
        info = inspect_dataset(staged)
    except DataFormatError as exc:
        staged.unlink(missing_ok=True)
        message = exc.message + (f" (field {exc.field!r})" if exc.field and exc.field != "data" else "")
        raise ApiProblem(422, f"invalid dataset: {message}", "file") from None
    store.commit_upload(staged, sha256, info.format)
    dataset = Dataset(
        id=new_id("ds"),
        tenant_id=tenant_id,
        name=(name or PurePath(filename).name)[:300],
        format=info.format,
        kind=info.kind,
        records=info.records,
        bytes=size,
        sha256=sha256,
    )
    return dataset_repo.add(session, dataset)


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
