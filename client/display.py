"""Terminal output shared by the CLI and the demo: the job progress bar and the checkpoint table."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO

from tqdm import tqdm

from gisp_service.client.resources import TERMINAL, Checkpoint, Job


class JobProgressBar:
    """A tqdm bar on stderr driven by polled job resources (`update(job)` after each poll)."""

    def __init__(self, job_id: str, stream: IO[str] | None = None) -> None:
        self._bar = tqdm(
            total=None,
            desc=job_id,
            unit="step",
            file=stream or sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]",
        )
        self._last: tuple[object, ...] | None = None

    def update(self, job: Job) -> None:
        """Redraw only when something the user sees changed (polls are frequent, logs may not be a tty)."""
        progress = job.get("progress") or {}
        total = progress.get("total_steps")
        step = progress.get("step") or 0
        if job["status"] == "succeeded" and total:
            step = total
        postfix = {"status": job["status"]}
        if progress.get("sparsity") is not None:
            postfix["sparsity"] = f"{progress['sparsity']:.3f}"
        if progress.get("loss") is not None:
            postfix["loss"] = f"{progress['loss']:.3f}"
        if progress.get("eta_seconds") is not None and job["status"] not in TERMINAL:
            postfix["eta"] = f"{progress['eta_seconds']:.0f}s"
        state = (total, step, tuple(postfix.items()))
        if state == self._last:
            return
        self._last = state
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = step
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def headline_metric(metrics: dict[str, float]) -> tuple[str, float | None]:
    for name in ("perplexity", "accuracy"):
        if name in metrics:
            return name, metrics[name]
    for name, value in sorted(metrics.items()):
        return name, value
    return "metric", None


NESTED = {
    True: "nested: yes (each checkpoint is a subnetwork of every less sparse one)",
    False: "nested: no (searched apart: a checkpoint need not be a subnetwork of a less sparse one)",
}


def checkpoint_table(checkpoints: Iterable[Checkpoint], nested: bool | None = None) -> str:
    """One line per checkpoint: target, achieved sparsity, parameters, weight bytes, FLOPs/token,
    metric; then whether the family is nested (`nested`, else the list's own, as the client's
    `checkpoints()` returns it; no line when neither says)."""
    nested = getattr(checkpoints, "nested", None) if nested is None else nested
    rows = list(checkpoints)
    metric_name = next((headline_metric(c.get("metrics") or {})[0] for c in rows if c.get("metrics")), "metric")
    width = max([len(c["id"]) for c in rows] + [2])
    header = (
        f"{'id':<{width}} {'target':>6} {'sparsity':>8} {'params':>11} {'bytes':>11} {'flops/token':>12} "
        f"{metric_name:>10} {'materialized':>12}"
    )
    lines = [header, "-" * len(header)]
    for c in rows:
        _, value = headline_metric(c.get("metrics") or {})
        metric = f"{value:>10.3f}" if value is not None else f"{'-':>10}"
        lines.append(
            f"{c['id']:<{width}} {c['target_sparsity']:>6.2f} {c['sparsity']:>8.4f} {c['parameter_count']:>11,} "
            f"{c['bytes']:>11,} {c['flops_per_token']:>12,} {metric} {'yes' if c.get('sha256') else 'no':>12}"
        )
    if not rows:
        lines.append("(no checkpoints yet)")
    elif nested is not None:
        lines.append(NESTED[bool(nested)])
    return "\n".join(lines)


def job_summary(job: Job) -> str:
    progress = job.get("progress") or {}
    lines = [
        f"id:          {job['id']}",
        f"status:      {job['status']}",
        f"model:       {job['model']}",
        f"dataset:     {job['dataset_id'] or 'hub ' + str((job.get('hub_dataset') or {}).get('hub'))}"
        + (f" (eval {job['eval_dataset_id']})" if job.get("eval_dataset_id") else ""),
        f"objective:   {job['objective']}  method: {job['method']}  targets: "
        + ",".join(f"{t:g}" for t in job["targets"]),
        f"schedule:    {job['steps']} steps, {job['samples']} samples x {job['seq_len']} tokens, "
        f"seed {job['seed']}, {job['dtype']}",
    ]
    if progress:
        parts = [f"step {progress.get('step', 0)}/{progress.get('total_steps', '?')}"]
        if progress.get("sparsity") is not None:
            parts.append(f"sparsity {progress['sparsity']:.4f}")
        if progress.get("loss") is not None:
            parts.append(f"loss {progress['loss']:.4f}")
        if progress.get("eta_seconds") is not None and job["status"] not in TERMINAL:
            parts.append(f"eta {progress['eta_seconds']:.0f} s")
        lines.append("progress:    " + ", ".join(parts))
    lines.append(f"checkpoints: {job.get('checkpoint_count', 0)}")
    for key in ("created_at", "started_at", "finished_at"):
        if job.get(key):
            lines.append(f"{key + ':':<12} {job[key]}")
    if job.get("error"):
        lines.append(f"error:       {job['error']['code']}: {job['error']['message']}")
    return "\n".join(lines)
