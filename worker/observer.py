"""The engine observer of a service job: tells the engine to stop (cancelled, taken over, shutting
down, over its time limit; read before each step and each layer of the reconstruction phase),
registers every checkpoint as it is crossed or, for a job that reconstructs, once refit (with the
metrics the engine measured), persists the trajectory, the refit tensors and progress."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Literal

from sqlalchemy.orm import Session

from gisp.loading import DTYPES
from gisp.methods.search import SearchProgress
from gisp.pruner import PruneObserver, StepReport
from gisp.trajectory import CheckpointRecord, Trajectory
from gisp_service.api.webhooks import events as webhook_events
from gisp_service.core.runtime import Runtime
from gisp_service.db.ids import new_id
from gisp_service.db.models import Checkpoint
from gisp_service.db.repos import checkpoints as checkpoint_repo
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import write_retrying
from gisp_service.worker.faults import maybe_die
from gisp_service.worker.process import SHUTDOWN_REQUESTED

log = logging.getLogger("gisp.worker")
StopReason = Literal["cancelled", "lost", "interrupted", "timed_out"]
# the engine asks `should_stop` inside its long loops (every record, batch, step); the database is
# read at most this often, so a cancel is heard within about a second and a check costs nothing
STOP_POLL_SECONDS = 1.0


def checkpoint_row(job_id: str, tenant_id: str, record: CheckpointRecord, dtype: str) -> Checkpoint:
    kv_groups, channels = record.structure.layer_widths()
    return Checkpoint(
        id=new_id("ckpt"),
        job_id=job_id,
        tenant_id=tenant_id,
        target_sparsity=record.target,
        sparsity=record.sparsity,
        parameter_count=record.parameter_count,
        prunable_parameter_count=record.prunable_parameter_count,
        bytes=record.parameter_count * DTYPES[dtype].itemsize,
        flops_per_token=record.flops_per_token,
        step=record.step,
        metrics=dict(record.metrics),
        reconstruction=record.reconstruction,
        reconstruction_sha256=record.reconstruction_sha256,
        unreconstructed_metrics=dict(record.unreconstructed_metrics),
        reconstruction_rejected=record.reconstruction_rejected,
        layers=[{"kv_groups": k, "channels": c} for k, c in zip(kv_groups, channels, strict=True)],
        structure=record.structure.to_dict(),
    )


class JobObserver(PruneObserver):
    def __init__(
        self,
        rt: Runtime,
        job_id: str,
        tenant_id: str,
        lease: str,
        dtype: str,
        deadline: float | None = None,
        targets: list[float] | None = None,
        seed: int = -1,
    ) -> None:
        self.rt, self.job_id, self.tenant_id, self.lease, self.dtype = rt, job_id, tenant_id, lease, dtype
        self.seed = seed  # the job's, for the tests' fault injection only
        self.targets = [round(t, 6) for t in targets or []]
        # why the engine was asked to stop: "cancelled" (by the user), "lost" (another worker owns
        # the job now: this one was presumed dead), "interrupted" (this worker is shutting down) or
        # "timed_out" (past GISP_JOB_TIME_LIMIT; `deadline` is that moment on time.monotonic())
        self.stop_reason: StopReason | None = None
        self.deadline = deadline
        self._next_poll = 0.0

    def should_stop(self) -> bool:
        if self.stop_reason is None and SHUTDOWN_REQUESTED.is_set():
            self.stop_reason = "interrupted"
        now = time.monotonic()
        if self.stop_reason is None and self.deadline is not None and now >= self.deadline:
            self.stop_reason = "timed_out"
        if self.stop_reason is None and now >= self._next_poll:
            self._next_poll = now + STOP_POLL_SECONDS

            def poll(session: Session) -> StopReason | None:
                job = job_repo.get_any(session, self.job_id)
                if job is None or job.lease != self.lease or job.status != "running":
                    return "lost"
                return "cancelled" if job.cancel_requested else None

            self.stop_reason = write_retrying(self.rt.sessions, poll)
        return self.stop_reason is not None

    def on_checkpoint(self, record: CheckpointRecord) -> None:
        """Register the checkpoint (the engine has measured it already)."""

        def register(session: Session) -> None:
            row, created = checkpoint_repo.upsert(
                session, checkpoint_row(self.job_id, self.tenant_id, record, self.dtype)
            )
            if created:
                event_repo.append(
                    session,
                    self.job_id,
                    "checkpoint",
                    {"checkpoint_id": row.id, "target_sparsity": record.target, "sparsity": record.sparsity},
                )
                webhook_events.checkpoint_created(session, self.rt.settings, row)

        write_retrying(self.rt.sessions, register)

    def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
        maybe_die(int(trajectory.settings.get("seed", -1)), report.step)  # tests' fault injection only
        started = time.perf_counter()
        self.on_trajectory(trajectory)
        done = trajectory.completed_steps
        eta = trajectory.elapsed_seconds / max(done, 1) * (trajectory.total_steps - done)
        loss = report.loss if report.loss is not None and report.loss == report.loss else None

        def record(session: Session) -> bool:
            owned = job_repo.heartbeat(
                session,
                self.job_id,
                self.lease,
                step=report.step,
                total_steps=report.total_steps,
                sparsity=report.sparsity,
                loss=loss,
                eta_seconds=eta,
            )
            if owned:
                event_repo.append(
                    session,
                    self.job_id,
                    "step",
                    {
                        "step": report.step,
                        "total_steps": report.total_steps,
                        "sparsity": report.sparsity,
                        "loss": loss,
                        "seconds": report.seconds,
                        "removed_units": report.removed_units,
                    },
                    duration=report.seconds,
                )
                event_repo.count_step_duration(session, report.seconds)
            return owned

        owned = write_retrying(self.rt.sessions, record)
        if not owned and self.stop_reason is None:
            self.stop_reason = "lost"
        log.debug("job %s step %d persisted in %.3fs", self.job_id, report.step, time.perf_counter() - started)

    def on_search(self, progress: SearchProgress) -> None:
        """A search-based method's progress inside a target (ladder layers, generations with the
        best fitness) as a `search` event; a heartbeat keeps the lease between targets."""
        if progress.loaded < progress.done:  # tests' fault injection only (not at work a resume read back)
            p = progress
            maybe_die(self.seed, f"tyr:{p.target:g}:{p.round}:{p.phase}:{p.done}")

        def record(session: Session) -> None:
            if job_repo.heartbeat(session, self.job_id, self.lease):
                event_repo.append(session, self.job_id, "search", asdict(progress))

        write_retrying(self.rt.sessions, record)

    def on_reconstruction_progress(self, record: CheckpointRecord, layers: int, total: int) -> None:
        """The reconstruction phase's progress: one event per layer, the fraction on the job."""
        targets = sorted(self.targets)
        done = targets.index(record.target) if record.target in targets else 0
        fraction = (done + layers / max(total, 1)) / max(len(targets), 1)

        def progress(session: Session) -> bool:
            owned = job_repo.heartbeat(
                session, self.job_id, self.lease, phase="reconstruction", phase_progress=fraction
            )
            if owned:
                event_repo.append(
                    session,
                    self.job_id,
                    "reconstruction",
                    {"target_sparsity": record.target, "layer": layers, "total_layers": total, "progress": fraction},
                )
            return owned

        owned = write_retrying(self.rt.sessions, progress)
        if not owned and self.stop_reason is None:
            self.stop_reason = "lost"

    def on_warning(self, message: str) -> None:
        write_retrying(
            self.rt.sessions, lambda session: event_repo.append(session, self.job_id, "warning", {"message": message})
        )

    def on_reconstructed(self, record: CheckpointRecord, tensors: bytes, trajectory: Trajectory) -> None:
        """Keep the refit tensors beside the trajectory: downloads rebuild the checkpoint from both."""
        self.rt.store.write_bytes(self.rt.store.reconstruction_path(self.job_id, record.name), tensors)

    def on_trajectory(self, trajectory: Trajectory) -> None:
        self.rt.store.write_bytes(self.rt.store.trajectory_path(self.job_id), trajectory.to_json().encode())
