"""Job logic: validate a submission completely before anything is queued (the schema checks each
setting; here the model reference, the tenant's datasets and their kinds), build the engine's
settings once and store them on the job, honour Idempotency-Key, cancel."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gisp.config import PruneSettings
from gisp.data import Columns
from gisp.errors import ConfigError, DataFormatError
from gisp.objectives import get_objective
from gisp_service.api.errors import ApiProblem, found
from gisp_service.api.jobs.schemas import JOB_SETTINGS, JobCreate
from gisp_service.api.webhooks import events as webhook_events
from gisp_service.core import model_refs
from gisp_service.core.settings import Settings
from gisp_service.db.ids import new_id
from gisp_service.db.models import Job
from gisp_service.db.repos import checkpoints as checkpoint_repo
from gisp_service.db.repos import datasets as dataset_repo
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo

SETTING_NAMES = {spec.name for spec in JOB_SETTINGS}


def _check_kind(objective: str, kind: str, field: str, errors: list[dict[str, str]]) -> None:
    try:
        get_objective(objective).check(kind)  # type: ignore[arg-type]
    except DataFormatError as exc:
        errors.append({"field": field, "message": exc.message})


def _check_hub(body: JobCreate, max_rows: int, errors: list[dict[str, str]]) -> None:
    """The row cap, and the record kind the column mapping picks (text by default) against the objective."""
    hub = body.hub_dataset
    assert hub is not None
    if hub.rows > max_rows:
        errors.append({"field": "hub_dataset.rows", "message": f"at most {max_rows} rows (GISP_HUB_MAX_ROWS)"})
    try:
        kind = Columns.from_dict(hub.columns.model_dump()).kind() or "text"
    except DataFormatError as exc:
        errors.append({"field": f"hub_dataset.columns.{exc.field}", "message": exc.message})
        return
    _check_kind(body.objective, kind, "hub_dataset.columns", errors)


def validate(
    session: Session, tenant_id: str, body: JobCreate, model_roots, max_hub_rows: int = 100_000
) -> PruneSettings:
    """The checks the schema cannot make (the model reference, the tenant's datasets and their
    kinds), then the engine's own settings; a 422 names every offending field."""
    errors: list[dict[str, str]] = []
    try:
        model_refs.check(body.model, model_roots)
    except model_refs.InvalidModelRef as exc:
        errors.append({"field": "model", "message": str(exc)})
    if (body.dataset_id is None) == (body.hub_dataset is None):
        errors.append({"field": "dataset_id", "message": "give either dataset_id (an upload) or hub_dataset"})
    for field in ("dataset_id", "eval_dataset_id"):
        dataset_id = getattr(body, field)
        if dataset_id is None:
            continue
        dataset = dataset_repo.get(session, tenant_id, dataset_id)
        if dataset is None:
            errors.append({"field": field, "message": f"dataset {dataset_id!r} not found"})
        elif field == "dataset_id":
            _check_kind(body.objective, dataset.kind, field, errors)
    if body.hub_dataset is not None:
        _check_hub(body, max_hub_rows, errors)
    settings = None
    try:
        settings = PruneSettings(**body.model_dump(include=SETTING_NAMES))
    except ConfigError as exc:
        errors.append({"field": exc.field or "body", "message": exc.message})
    if errors or settings is None:
        raise ApiProblem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
    return settings


def request_hash(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


def stored_settings(settings: PruneSettings) -> dict[str, Any]:
    """What a job stores: every setting but the device, which is the worker's."""
    return {k: v for k, v in settings.to_dict().items() if k in SETTING_NAMES}


def create(
    session: Session,
    tenant_id: str,
    body: JobCreate,
    idempotency_key: str | None,
    model_roots,
    max_hub_rows: int = 100_000,
) -> tuple[Job, bool]:
    """Returns (job, created). An existing job for the same key and body is returned as is."""
    digest = request_hash(body)
    if idempotency_key:
        existing = job_repo.by_idempotency_key(session, tenant_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    settings = validate(session, tenant_id, body, model_roots, max_hub_rows)
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status="queued",
        model=body.model,
        dataset_id=body.dataset_id,
        hub_dataset=body.hub_dataset.model_dump() if body.hub_dataset is not None else None,
        eval_dataset_id=body.eval_dataset_id,
        settings=stored_settings(settings),
        total_steps=settings.total_steps,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    try:
        with session.begin_nested():
            job_repo.add(session, job)
    except IntegrityError:  # a concurrent request with the same key won
        existing = job_repo.by_idempotency_key(session, tenant_id, idempotency_key or "")
        if existing is None:
            raise
        return _replay(existing, digest), False
    event_repo.append(session, job.id, "queued", {})
    return job, True


def _replay(job: Job, digest: str) -> Job:
    if job.request_hash != digest:
        raise ApiProblem(422, "this Idempotency-Key was used with a different request body", "Idempotency-Key")
    return job


def get(session: Session, tenant_id: str, job_id: str) -> Job:
    return found(job_repo.get(session, tenant_id, job_id), "job", job_id, "job_id")


def page(session: Session, tenant_id: str, status: str | None, limit: int, after: str | None) -> dict[str, Any]:
    rows, more = job_repo.page(session, tenant_id, status, limit, after)
    return {"data": out_many(session, rows), "has_more": more}


def events(session: Session, tenant_id: str, job_id: str, after: int, limit: int) -> dict[str, Any]:
    rows, more = event_repo.page(session, get(session, tenant_id, job_id).id, after, limit)
    return {"data": rows, "has_more": more}


def cancel(session: Session, tenant_id: str, job_id: str, settings: Settings | None = None) -> Job:
    job = get(session, tenant_id, job_id)
    if job.status in job_repo.FINISHED:
        raise ApiProblem(409, f"job {job_id!r} already finished ({job.status})", "job_id")
    job_repo.request_cancel(session, job)
    if job.status == "cancelled":  # it was queued; a running job stops (and logs it) at its next step
        event_repo.append(session, job.id, "cancelled", {"while": "queued"})
        if settings is not None:
            webhook_events.job_finished(session, settings, job.id)
    return job


def to_out(job: Job, checkpoint_count: int) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "model": job.model,
        "dataset_id": job.dataset_id,
        "hub_dataset": job.hub_dataset,
        "eval_dataset_id": job.eval_dataset_id,
        **job.settings,
        "progress": {
            "step": job.step,
            "total_steps": job.total_steps,
            "sparsity": job.sparsity,
            "loss": job.loss,
            "eta_seconds": job.eta_seconds,
            "phase": job.phase or "pruning",
            "phase_progress": job.phase_progress,
        },
        "error": {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "checkpoint_count": checkpoint_count,
    }


def out(session: Session, job: Job) -> dict[str, Any]:
    return to_out(job, checkpoint_repo.count_for_job(session, job.id))


def out_many(session: Session, jobs: list[Job]) -> list[dict[str, Any]]:
    counts = checkpoint_repo.counts_for_jobs(session, [j.id for j in jobs])
    return [to_out(j, counts.get(j.id, 0)) for j in jobs]
