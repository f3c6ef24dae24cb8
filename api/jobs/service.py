"""Job logic: validate a submission completely before anything is queued (names against the
engine's registries, the model reference, the tenant's datasets and their kinds), honour
Idempotency-Key, enqueue after the commit, cancel."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gisp.config import PruneSettings, default_importance
from gisp.errors import ConfigError, DataFormatError
from gisp.importance import estimator_names
from gisp.loading import DTYPES
from gisp.methods import get_method, method_names
from gisp.objectives import get_objective, objective_names
from gisp_service.api.errors import ApiProblem, not_found
from gisp_service.api.jobs.schemas import JobCreate
from gisp_service.core import model_refs
from gisp_service.db.ids import new_id
from gisp_service.db.models import Job
from gisp_service.db.repos import checkpoints as checkpoint_repo
from gisp_service.db.repos import datasets as dataset_repo
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo


def _choice(errors: list[dict[str, str]], field: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        errors.append({"field": field, "message": f"unknown {field} {value!r}; choose one of {', '.join(allowed)}"})


def validate(session: Session, tenant_id: str, body: JobCreate, model_roots) -> None:
    """Raise a 422 naming every offending field."""
    errors: list[dict[str, str]] = []
    _choice(errors, "objective", body.objective, objective_names())
    _choice(errors, "method", body.method, method_names())
    if body.importance is not None:
        _choice(errors, "importance", body.importance, estimator_names())
    _choice(errors, "dtype", body.dtype, sorted(DTYPES))
    if not body.targets:
        errors.append({"field": "targets", "message": "at least one target sparsity is required"})
    for i, target in enumerate(body.targets):
        if not 0.0 < target < 1.0:
            errors.append({"field": f"targets.{i}", "message": f"target {target:g} is outside (0, 1)"})
    for name, minimum in (("steps", 1), ("samples", 1), ("seq_len", 2)):
        if getattr(body, name) < minimum:
            errors.append({"field": name, "message": f"{name} must be at least {minimum}, not {getattr(body, name)}"})
    try:
        model_refs.check(body.model, model_roots)
    except model_refs.InvalidModelRef as exc:
        errors.append({"field": "model", "message": str(exc)})
    for field in ("dataset_id", "eval_dataset_id"):
        dataset_id = getattr(body, field)
        if dataset_id is None:
            continue
        dataset = dataset_repo.get(session, tenant_id, dataset_id)
        if dataset is None:
            errors.append({"field": field, "message": f"dataset {dataset_id!r} not found"})
        elif field == "dataset_id" and body.objective in objective_names():
            try:
                get_objective(body.objective).check(dataset.kind)  # type: ignore[arg-type]
            except DataFormatError as exc:
                errors.append({"field": field, "message": exc.message})
    if not errors:
        try:
            PruneSettings(**_settings_args(body))
        except ConfigError as exc:
            errors.append({"field": exc.field or "body", "message": exc.message})
    if errors:
        raise ApiProblem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


def _settings_args(body: JobCreate) -> dict[str, Any]:
    return body.model_dump(
        include={"targets", "objective", "method", "steps", "samples", "seq_len", "seed", "dtype", "importance"}
    )


def request_hash(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


def create(
    session: Session, tenant_id: str, body: JobCreate, idempotency_key: str | None, model_roots
) -> tuple[Job, bool]:
    """Returns (job, created). An existing job for the same key and body is returned as is."""
    digest = request_hash(body)
    if idempotency_key:
        existing = job_repo.by_idempotency_key(session, tenant_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    validate(session, tenant_id, body, model_roots)
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status="queued",
        model=body.model,
        dataset_id=body.dataset_id,
        eval_dataset_id=body.eval_dataset_id,
        objective=body.objective,
        method=body.method,
        importance=body.importance or default_importance(body.objective),
        dtype=body.dtype,
        targets=sorted({round(float(t), 6) for t in body.targets}),
        steps=body.steps,
        samples=body.samples,
        seq_len=body.seq_len,
        seed=body.seed,
        total_steps=body.steps if get_method(body.method).iterative else 1,  # one-shot baselines: one step
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
    job = job_repo.get(session, tenant_id, job_id)
    if job is None:
        raise not_found("job", job_id, "job_id")
    return job


def cancel(session: Session, tenant_id: str, job_id: str) -> Job:
    job = get(session, tenant_id, job_id)
    if job.status in job_repo.FINISHED:
        raise ApiProblem(409, f"job {job_id!r} already finished ({job.status})", "job_id")
    job_repo.request_cancel(session, job)
    if job.status == "cancelled":  # it was queued; a running job stops (and logs it) at its next step
        event_repo.append(session, job.id, "cancelled", {"while": "queued"})
    return job


def to_out(job: Job, checkpoint_count: int) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "model": job.model,
        "dataset_id": job.dataset_id,
        "eval_dataset_id": job.eval_dataset_id,
        "objective": job.objective,
        "targets": job.targets,
        "steps": job.steps,
        "method": job.method,
        "samples": job.samples,
        "seq_len": job.seq_len,
        "seed": job.seed,
        "dtype": job.dtype,
        "importance": job.importance,
        "progress": {
            "step": job.step,
            "total_steps": job.total_steps,
            "sparsity": job.sparsity,
            "loss": job.loss,
            "eta_seconds": job.eta_seconds,
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
