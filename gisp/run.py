"""One call from files to a trajectory: load the model and data, check them against the
objective, pick calibration and held-out examples, and prune."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from gisp.config import PruneSettings
from gisp.data import Columns, Example, build_examples, read_records
from gisp.data.examples import Mode
from gisp.data.records import RecordKind, file_sha256
from gisp.eval.perplexity import heldout_metrics
from gisp.loading import LoadedModel, check_context, load_model
from gisp.methods import get_method
from gisp.objectives import get_objective
from gisp.objectives.base import pad_token_id
from gisp.pruner import Measure, PruneObserver, new_trajectory, prune
from gisp.reconstruction.finalists import finalist_judge
from gisp.reconstruction.in_loop import StepRefit
from gisp.reconstruction.stage import needs_reconstruction, reconstruct_checkpoints, reconstruction_examples
from gisp.stopping import StopCheck, check_stop, checked
from gisp.trajectory import Trajectory

# how held-out data of each kind is measured: text by perplexity, prompt/completion by the
# answer's perplexity, multiple choice by accuracy
MEASURE_MODE: dict[RecordKind, Mode] = {"text": "lm", "completion": "completion", "choice": "choice"}


@dataclass
class PreparedRun:
    loaded: LoadedModel
    calibration: list[Example]
    heldout: list[Example]
    data_sha256: str
    extra: list[Example] = field(default_factory=list)  # further windows the reconstruction may fit on


def prepare(
    model: str,
    data: str | Path,
    settings: PruneSettings,
    revision: str | None = None,
    eval_data: str | Path | None = None,
    columns: Columns | None = None,
    should_stop: StopCheck | None = None,
) -> PreparedRun:
    """Validate the data for the objective (before the model is loaded), then load both.

    The held-out examples come from `eval_data` when given (`settings.heldout` of them), else
    they are kept out of the calibration data. `columns` maps a table's columns to the records'
    fields (the calibration data's; the evaluation data uses the .jsonl names). `should_stop` is
    asked between the phases and between the records being tokenized (PruningStopped)."""
    objective = get_objective(settings.objective)
    kind, records = read_records(data, columns)
    objective.check(kind)
    records = checked(records, should_stop, "data preparation")  # type: ignore[assignment]
    check_stop(should_stop, "data preparation")
    eval_records = read_records(eval_data) if eval_data is not None else None
    if eval_records is not None:
        eval_records = (eval_records[0], checked(eval_records[1], should_stop, "data preparation"))  # type: ignore[assignment]
    sha = file_sha256(data)
    check_stop(should_stop, "model loading")
    loaded = load_model(model, device=settings.device, dtype=settings.dtype, revision=revision)
    check_context(settings.seq_len, loaded.model.config)
    check_stop(should_stop, "data preparation")
    tokenizer, count, seq_len, seed = loaded.tokenizer, settings.heldout, settings.seq_len, settings.seed
    kept_out = 0 if eval_records is not None else count
    more = max(0, settings.reconstruct_samples - settings.samples)  # drawn after the held-out windows
    calibration, heldout = build_examples(
        tokenizer, records, objective.mode, settings.samples, seq_len, seed, kept_out + more
    )
    heldout, extra = heldout[:kept_out], heldout[kept_out:]
    if eval_records is not None:
        eval_kind, eval_rows = eval_records
        heldout = build_examples(tokenizer, eval_rows, MEASURE_MODE[eval_kind], count, seq_len, seed)[0]
        heldout = heldout[:count]
    elif kind == "choice" and objective.mode != "choice":
        # multiple-choice data is always measured by accuracy; same seed, so the same held-out items
        _, heldout = build_examples(tokenizer, records, "choice", settings.samples, seq_len, seed, count)
    return PreparedRun(loaded, calibration, heldout, sha, extra)


def run(
    model: str,
    data: str | Path,
    settings: PruneSettings,
    observer: PruneObserver | None = None,
    resume: Trajectory | None = None,
    eval_data: str | Path | None = None,
    measure: Measure | None = None,
    columns: Columns | None = None,
    reconstruction_dir: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> tuple[Trajectory, PreparedRun]:
    """Prune `model` on `data`; continue `resume` instead of starting over when given. Each
    checkpoint's metrics are measured on the held-out examples (see `prepare`), or by `measure`
    when one is given (benchmarks measuring several texts); the dense model is measured the same way
    once, before the first step (`trajectory.dense_metrics`). With a reconstruction setting, each
    checkpoint's refit tensors are written under `reconstruction_dir` (what `export_all(...,
    tensors_dir=...)` reads) and handed to the observer. `state_dir` is the run's folder, the
    same when it is resumed: a search-based method keeps its resumable state there."""
    revision = resume.base_revision if resume else None
    should_stop = observer.should_stop if observer is not None else None
    prepared = prepare(
        model, data, settings, revision=revision, eval_data=eval_data, columns=columns, should_stop=should_stop
    )
    trajectory = resume or new_trajectory(prepared.loaded, settings, prepared.data_sha256)
    pad_id, heldout = pad_token_id(prepared.loaded.tokenizer), prepared.heldout
    if measure is None and heldout:

        def measure(model: nn.Module) -> dict[str, float]:
            return heldout_metrics(model, heldout, pad_id)

    if measure is not None and trajectory.completed_steps == 0 and not trajectory.dense_metrics:
        check_stop(should_stop, "the dense model's measurement")
        trajectory.dense_metrics = measure(prepared.loaded.model)  # the point every checkpoint is compared to
    # a search-based method re-solves its own weights while it searches (unless tyr_refit is stage)
    refit = needs_reconstruction(settings)
    searches = get_method(settings.method).searches  # it leaves the model dense
    if not (refit and trajectory.finished):  # a finished run resumed for its refit: the model stays dense
        step_refit = None
        if settings.reconstruct_in_loop:  # the dense model the refit fits to, beside the one being cut
            check_stop(should_stop, "model loading")
            dense = load_model(model, device=settings.device, dtype=settings.dtype, revision=revision)
            examples = reconstruction_examples(prepared.calibration, prepared.extra, settings)
            step_refit = StepRefit(dense, examples, settings, should_stop)
        judge = None  # the stage refits a search's structures: the search may choose among finalists by it
        if refit and searches:
            examples = reconstruction_examples(prepared.calibration, prepared.extra, settings)
            judge = finalist_judge(prepared.loaded, examples, settings)
        prune(
            prepared.loaded,
            prepared.calibration,
            settings,
            trajectory,
            observer,
            measure,
            not refit,
            reconstruction_dir,
            state_dir=state_dir,
            step_refit=step_refit,
            judge=judge,
        )
        del judge  # its caught layer inputs
        if refit and not searches:  # the model was cut in place; the refit starts again from the dense weights
            loaded = prepared.loaded
            prepared.loaded = None  # type: ignore[assignment]  (one model in memory at a time)
            del loaded
            if step_refit is not None:
                prepared.loaded, step_refit = step_refit.dense, None  # its activation cache goes too
            else:
                prepared.loaded = load_model(model, device=settings.device, dtype=settings.dtype, revision=revision)
    if refit:
        examples = reconstruction_examples(prepared.calibration, prepared.extra, settings)
        reconstruct_checkpoints(prepared.loaded, examples, settings, trajectory, observer, measure, reconstruction_dir)
    return trajectory, prepared
