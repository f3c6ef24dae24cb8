"""Dataset logic: stream the upload to a staging file under the size limit, read it with the
engine's reader and the upload's column mapping (so a job never fails later on data the upload
accepted), then file the upload as sent and, for a table or a mapped .jsonl, the canonical .jsonl
that jobs read, each by sha256."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from gisp.data import Columns, read_records, write_records
from gisp.data.records import SUFFIXES, Record, check_text_file, data_format
from gisp.errors import DataFormatError
from gisp_service.api.datasets.schemas import ColumnMapping, DatasetFields, DatasetOut
from gisp_service.api.datasets.upload import Received
from gisp_service.api.errors import ApiProblem, found
from gisp_service.api.limits import too_many
from gisp_service.core.artifacts import ArtifactStore
from gisp_service.core.runtime import Runtime
from gisp_service.db.ids import new_id
from gisp_service.db.models import Dataset
from gisp_service.db.repos import datasets as dataset_repo
from gisp_service.db.session import read_session, write_transaction

STORAGE_RETRY_SECONDS = 3600  # storage frees only when the tenant deletes datasets
ENGINE_FORMATS = ("txt", "jsonl")  # formats the engine reads as they are, when no mapping renames fields


def form_of(fields: dict[str, str]) -> DatasetFields:
    """The form's text fields, checked; empty values count as not given."""
    try:
        return DatasetFields.model_validate({k: v for k, v in fields.items() if v.strip()})
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])) or "body", "message": e["msg"]} for e in exc.errors()]
        raise ApiProblem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None


def columns_of(mapping: dict[str, str | None]) -> Columns:
    try:
        return Columns.from_dict(mapping)
    except DataFormatError as exc:
        raise ApiProblem(422, exc.message, exc.field or "columns") from None


def upload(
    session: Session,
    store: ArtifactStore,
    tenant_id: str,
    received: Received,
    name: str | None,
    columns: Columns | None = None,
) -> Dataset:
    """File a received upload (its staged file is moved into the store, or removed when refused)."""
    columns = columns or Columns()
    filename = received.filename or ""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise ApiProblem(
            422, f"unsupported file type {suffix or filename!r}; upload one of {', '.join(SUFFIXES)}", "file"
        )
    staged, sha256, size = received.staged, received.sha256, received.size
    assert staged is not None
    try:
        fmt = data_format(staged)
        if fmt == "txt":  # one text stream: checked in pieces, never held whole (bounded memory)
            check_text_file(staged, columns)
            kind, records = "text", None
        else:
            kind, records = read_records(staged, columns)
    except DataFormatError as exc:
        message = exc.message + (f" (field {exc.field!r})" if exc.field and exc.field != "data" else "")
        message = message.replace(str(staged), filename).replace(staged.name, filename)  # the user's name
        raise ApiProblem(422, f"invalid dataset {filename!r}: {message}", "file") from None
    canonical_sha256, canonical_format = sha256, fmt
    if records is not None and (fmt not in ENGINE_FORMATS or columns.given()):
        canonical_sha256, canonical_format = _store_canonical(store, records)
    store.commit_upload(staged, sha256, fmt)
    dataset = Dataset(
        id=new_id("ds"),
        tenant_id=tenant_id,
        name=(name or PurePath(filename).name)[:300],
        format=fmt,
        kind=kind,
        records=1 if records is None else len(records),
        bytes=size,
        sha256=sha256,
        canonical_sha256=canonical_sha256,
        canonical_format=canonical_format,
        columns=columns.given(),
    )
    return dataset_repo.add(session, dataset)


def check_storage(rt: Runtime, tenant_id: str, adding: int, session: Session | None = None) -> None:
    """429 when `adding` more bytes would take the tenant past GISP_MAX_TENANT_BYTES."""
    cap = rt.settings.max_tenant_bytes
    if not cap:
        return
    if session is None:
        with read_session(rt.read_sessions) as reading:
            stored = dataset_repo.stored_bytes(reading, tenant_id)
    else:
        stored = dataset_repo.stored_bytes(session, tenant_id)
    if stored + adding > cap:
        raise too_many(
            f"the tenant stores {stored} bytes of uploads; {adding} more would pass its quota of {cap} bytes "
            "(GISP_MAX_TENANT_BYTES): delete datasets it no longer needs",
            "file",
            STORAGE_RETRY_SECONDS,
        )


def store_upload(rt: Runtime, tenant_id: str, received: Received, form: DatasetFields) -> DatasetOut:
    """A received upload validated and filed in its own write transaction (runs in a thread)."""
    columns = columns_of(form.model_dump(include=set(ColumnMapping.model_fields)))
    with write_transaction(rt.sessions) as session:
        check_storage(rt, tenant_id, received.size, session)
        return DatasetOut.model_validate(upload(session, rt.store, tenant_id, received, form.name, columns))


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
