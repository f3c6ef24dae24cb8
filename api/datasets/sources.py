"""Where a job's data comes from: an upload's canonical file, or rows streamed from a hub
dataset (`{"hub": "org/name", "config", "split", "rows", "columns", "revision"}`) by the worker
when the job starts, capped at `rows`, written once as canonical .jsonl beside the job's
trajectory (a resumed job reads the same rows). An operator's mirror folder
(GISP_DATASET_MIRRORS=<root>, holding <root>/<org>/<name>) stands in for the hub on closed
networks through the same `datasets` call; a client names hub ids only, never a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gisp.data import Columns, write_records
from gisp.data.hub import read_hub_records
from gisp_service.core import model_refs
from gisp_service.core.artifacts import atomic_writer
from gisp_service.core.runtime import Runtime
from gisp_service.db.models import Job
from gisp_service.db.repos import datasets as dataset_repo


def mirror_folder(hub_id: str, roots: list[Path]) -> Path | None:
    """The operator's local copy of a hub dataset, if one of the mirror roots holds it."""
    if not model_refs.HUB_ID.match(hub_id) or ".." in hub_id:
        return None
    org, name = hub_id.split("/")
    return next((root / org / name for root in roots if (root / org / name).is_dir()), None)


def hub_source(hub_id: str, roots: list[Path]) -> str:
    """What `load_dataset` opens: the mirror folder where there is one, else the hub id."""
    folder = mirror_folder(hub_id, roots)
    return str(folder) if folder is not None else hub_id


def fetch_hub_dataset(rt: Runtime, job_id: str, spec: dict[str, Any]) -> Path:
    """Stream the spec's rows once into the job's canonical .jsonl; later calls reuse the file."""
    path = rt.store.hub_data_path(job_id)
    if path.is_file():
        return path
    _, records = read_hub_records(
        hub_source(spec["hub"], rt.settings.dataset_mirror_paths),
        config=spec.get("config"),
        split=spec.get("split") or "train",
        rows=int(spec["rows"]),
        columns=Columns.from_dict(spec.get("columns")),
        revision=spec.get("revision"),
        label=spec["hub"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as handle:
        write_records(handle, records)
    return path


def job_data_paths(rt: Runtime, job: Job) -> tuple[Path, Path | None]:
    """The files the engine reads for a job: calibration data and the optional evaluation data."""
    with rt.sessions() as session:
        data = dataset_repo.get_any(session, job.dataset_id) if job.dataset_id else None
        evaluation = dataset_repo.get_any(session, job.eval_dataset_id) if job.eval_dataset_id else None
    if job.hub_dataset is not None:
        data_path = fetch_hub_dataset(rt, job.id, job.hub_dataset)
    else:
        assert data is not None, f"job {job.id} has neither an upload nor a hub dataset"
        data_path = rt.store.upload_path(data.canonical_sha256, data.canonical_format)
    eval_path = None
    if evaluation is not None:
        eval_path = rt.store.upload_path(evaluation.canonical_sha256, evaluation.canonical_format)
    return data_path, eval_path
