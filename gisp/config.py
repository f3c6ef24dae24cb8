"""Settings of a pruning run: the one home of each setting's default, bounds, choices and help.

`PruneSettings` validates itself up front, so bad input fails before any model is loaded. The
CLI builds its options from the same field metadata (`setting_specs`), and the service builds
its request schema from it, so a default or a bound is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, get_type_hints

import torch

from gisp.errors import ConfigError
from gisp.importance import estimator_names
from gisp.loading import DTYPES
from gisp.methods import get_method, method_names
from gisp.normalization import NORMALIZATIONS
from gisp.objectives import objective_names
from gisp.reconstruction import get_reconstruction, reconstruction_names


@dataclass(frozen=True)
class SettingSpec:
    """What a caller may know about one setting without building a `PruneSettings`."""

    name: str
    type: Any  # the annotation, e.g. int, list[float], str | None
    default: Any  # MISSING for a required setting
    help: str
    ge: float | None = None  # numeric bounds of the value, or of each item of a list setting
    gt: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: Callable[[], list[str]] | None = None  # the registry's names, read when asked
    min_items: int | None = None
    max_items: int | None = None

    def bounds_text(self) -> str:
        """The bounds as `--help` shows them, e.g. `1–4096`, `(0, 1)`."""
        if self.gt is not None or self.lt is not None:
            return f"({_num(self.gt, '-inf')}, {_num(self.lt, 'inf')})"
        if self.ge is not None and self.le is not None:
            return f"{_num(self.ge)}–{_num(self.le)}"
        return f"≥ {_num(self.ge)}" if self.ge is not None else ""

    service: bool = True  # a job may set it (device is the worker's, not the client's)

    @property
    def required(self) -> bool:
        return self.default is MISSING


def _num(value: float | None, missing: str = "") -> str:
    return missing if value is None else f"{value:g}" if abs(value) < 1e15 else str(int(value))


def _setting(default: Any, help: str, **spec: Any) -> Any:
    extra = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(metadata={"spec": {"help": help, **spec}}, **extra)


# Upper bounds: what a client may ask for at all (a long list of targets or a huge step count is
# work and memory someone else's job waits for). The model's context length bounds seq_len further,
# once the model is known.
MAX_TARGETS = 64
MAX_STEPS = 4096
MAX_SAMPLES = 65_536
MAX_SEQ_LEN = 131_072
MAX_SEED = 2**63 - 1  # a signed 64-bit integer, as the database stores it
MAX_LAYER_INDEX = 1023
TARGET_DECIMALS = 6


def _dtype_names() -> list[str]:
    return sorted(DTYPES)


@dataclass
class PruneSettings:
    targets: list[float] = field(
        metadata={
            "spec": {
                "help": "sparsities to record, e.g. 0.2,0.4",
                "gt": 0.0,
                "lt": 1.0,
                "min_items": 1,
                "max_items": MAX_TARGETS,
            }
        }
    )
    objective: str = _setting("perplexity", "loss the importance comes from", choices=objective_names)
    method: str = _setting("gisp", "how units are ranked for removal", choices=method_names)
    steps: int = _setting(16, "schedule steps up to the largest target (one-shot methods use 1)", ge=1, le=MAX_STEPS)
    samples: int = _setting(64, "calibration samples", ge=1, le=MAX_SAMPLES)
    seq_len: int = _setting(
        256, "tokens per calibration window (at most the model's context length)", ge=2, le=MAX_SEQ_LEN
    )
    seed: int = _setting(0, "seed of the calibration sampling and of seeded methods", ge=0, le=MAX_SEED)
    importance: str | None = _setting(
        None, "importance estimator; unset: taylor for the margin objective, else fisher", choices=estimator_names
    )
    normalization: str = _setting("param", "block-wise normalization of scores", choices=NORMALIZATIONS.names)
    protect_layers: list[int] = _setting(
        [], "layer indices kept whole, e.g. 0,31", ge=0, le=MAX_LAYER_INDEX, max_items=MAX_LAYER_INDEX + 1
    )
    min_kv_groups: int = _setting(
        0,
        "KV groups a ranking method leaves in every layer's attention unless a target needs them (0: a "
        "layer's attention may be removed whole, as in the GISP paper)",
        ge=0,
        le=MAX_LAYER_INDEX,
    )
    batch_size: int = _setting(8, "sequences per forward pass while scoring", ge=1, le=MAX_SAMPLES)
    device: str = _setting("cpu", "cpu, cuda or cuda:N", service=False)
    dtype: str = _setting("float32", "weights' dtype while pruning and in the export", choices=_dtype_names)
    heldout: int = _setting(
        16,
        "examples measured for each checkpoint's metrics (from the evaluation data if given, else kept "
        "out of the calibration data)",
        ge=0,
        le=MAX_SAMPLES,
    )
    gradient_checkpointing: bool = _setting(False, "recompute activations in scoring passes (long sequences)")
    reconstruct: str = _setting(
        "lstsq-select-anchored",
        "after pruning, re-fit each checkpoint's o_proj/down_proj to the dense model on the calibration "
        "tokens: none (GISP as published), bias (FLAP's mean compensation), lstsq (ridge refit), "
        "lstsq-select (the refit also picks which units go inside a layer), lstsq-anchored and "
        "lstsq-select-anchored (their ridge term pulls toward the weights as cut, not zero); a refit that "
        "raises the objective's loss on held-back calibration sequences is not kept",
        choices=reconstruction_names,
    )
    reconstruct_lambda: float = _setting(
        1e-2,
        "smallest ridge term of the refit (relative to the mean diagonal of the inputs' Gram matrix): each "
        "projection keeps whichever of λ, 10λ, 100λ, 1000λ or the weights as cut fits held-back calibration "
        "sequences (every 4th) best",
        ge=0.0,
    )
    reconstruct_samples: int = _setting(
        0, "calibration windows the refit fits on (0: the calibration set; more draws further windows)", ge=0
    )
    reconstruct_inputs: bool = _setting(
        True,
        "the refit also re-solves each block's input projections (q/k/v, gate/up rows of the kept units) so "
        "that, fed the pruned model's hidden states, they reproduce the dense block's; the lstsq variants "
        "only (none and bias ignore it); not inside the loop",
    )
    reconstruct_residual: float = _setting(
        1.0,
        "share (0–1) of the residual stream's drift the refit's output projections also cancel: each is "
        "fitted to the dense block's output plus that share of the dense residual stream entering the block "
        "less the pruned one, so a layer makes good what earlier layers' cuts left (0: off, the default until "
        "2026-12-04); the lstsq variants only (none and bias ignore it); not inside the loop",
        ge=0.0,
        le=1.0,
    )
    reconstruct_target: str = _setting(
        "dense",
        "what the refit's output projections reproduce: dense (the dense model's output, so a layer also makes "
        "good what earlier cuts left; with reconstruct_inputs and reconstruct_residual) or local (the dense "
        "projection on the pruned model's own inputs: only the layer's own cut is made good, as SparseGPT and "
        "T'yr fit; reconstruct_inputs and reconstruct_residual then do not apply); the lstsq variants only",
        choices=lambda: ["dense", "local"],
    )
    reconstruct_in_loop: bool = _setting(
        False,
        "also refit after every pruning step (the plain lstsq or lstsq-anchored refit of the step's units), so "
        "the next step's importance is measured on the compensated model; holds a second copy of the model in "
        "memory; iterative methods with an lstsq-family reconstruct only",
    )

    # method tyr (docs/tyr.md): ladders of locally pruned levels per block, then an evolutionary
    # search of one level per block; defaults sized for models up to ~1B parameters on a CPU
    tyr_levels: int = _setting(9, "tyr: levels per block's ladder, centred on the expected level", ge=3, lt=65)
    tyr_step: float = _setting(
        0.125, "tyr: first round's step between levels, as a fraction of a block", gt=0.0, lt=0.5
    )
    tyr_rounds: int = _setting(
        3, "tyr: coarse-to-fine rounds (each re-centres the ladders and halves the step)", ge=1, lt=9
    )
    tyr_population: int = _setting(8, "tyr: allocations kept between search generations", ge=2, lt=1025)
    tyr_offspring: int = _setting(16, "tyr: offspring mutated per generation", ge=1, lt=4097)
    tyr_generations: int = _setting(12, "tyr: search generations per round", ge=0, lt=1001)
    tyr_stage_samples: list[int] = _setting(
        [4, 16, 32], "tyr: calibration samples scoring each selection stage, increasing (capped at samples)", ge=1
    )
    tyr_stage_keep: list[int] = _setting([4, 2], "tyr: offspring kept after each selection stage but the last", ge=1)
    tyr_top_k: int = _setting(64, "tyr: dense next-token logits cached per position for the KL fitness", ge=1)
    tyr_update_rounds: int = _setting(16, "tyr: greedy removal rounds with weight updates per level", ge=1, lt=1025)
    tyr_damp: float = _setting(0.01, "tyr: ridge damping of the local re-solve, relative to mean(diag XᵀX)", ge=0.0)
    tyr_anchor: bool = _setting(
        False,
        "tyr: the local re-solve's ridge pulls toward the dense weight's kept columns, not zero (a large "
        "tyr_damp then keeps the weights as cut)",
    )
    tyr_refit: str = _setting(
        "ladder",
        "tyr: each checkpoint's weights: ladder (the local re-solve of o_proj/down_proj the search scored) or "
        "stage (the reconstruction stage's refit of the structure the search chose, from the dense weights, "
        "as every ranking method gets it: `reconstruct` and its settings decide it)",
        choices=lambda: ["ladder", "stage"],
    )
    tyr_finalists: int = _setting(
        8,
        "tyr with tyr_refit stage: the search's best allocations (and, when the stage's refit selects the units, "
        "its start) that the stage refits without the held-back calibration sequences, the lowest loss on those "
        "becoming the checkpoint; 0: the search's best, unjudged; no effect with tyr_refit ladder",
        ge=0,
        lt=65,
    )
    tyr_start: str = _setting(
        "uniform",
        "tyr: the first ladders' centre: uniform, or gisp's one-shot allocation",
        choices=lambda: ["uniform", "gisp"],
    )

    def __post_init__(self) -> None:
        if self.importance is None:
            self.importance = default_importance(self.objective)
        check_setting(setting_spec("targets"), self.targets)  # as sent, before rounding
        self.targets = sorted({_rounded_target(t) for t in self.targets})
        self.validate()

    def validate(self) -> None:
        for spec in setting_specs():
            check_setting(spec, getattr(self, spec.name))
        self._validate_tyr()
        self._validate_in_loop()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available", field="device")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, not {self.device!r}", field="device")

    def _validate_tyr(self) -> None:
        stages, keep = self.tyr_stage_samples, self.tyr_stage_keep
        if len(keep) != len(stages) - 1:
            raise ConfigError(
                f"tyr_stage_keep needs one value per selection stage but the last ({len(stages) - 1}), not {len(keep)}",
                field="tyr_stage_keep",
            )
        if any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
            raise ConfigError("tyr_stage_samples must increase from stage to stage", field="tyr_stage_samples")
        if any(b > a for a, b in zip(keep, keep[1:], strict=False)):
            raise ConfigError("tyr_stage_keep must not grow from stage to stage", field="tyr_stage_keep")

    def _validate_in_loop(self) -> None:
        if not self.reconstruct_in_loop:
            return
        if get_reconstruction(self.reconstruct).step_variant is None:
            raise ConfigError(
                f"reconstruct_in_loop refits between steps by least squares; reconstruct {self.reconstruct!r} "
                "has no such refit (use an lstsq variant)",
                field="reconstruct_in_loop",
            )
        method = get_method(self.method)
        if method.searches or not method.iterative or self.steps < 2:
            raise ConfigError(
                f"reconstruct_in_loop needs an iterative schedule of at least 2 steps; method {self.method!r} "
                f"with steps={self.steps} has no step after which a refit could change the next",
                field="reconstruct_in_loop",
            )

    @property
    def total_steps(self) -> int:
        """Schedule steps the run takes: `steps`, one for a one-shot method, one per target for a
        search-based method (each target is searched on its own)."""
        method = get_method(self.method)
        if method.searches:
            return len(self.targets)
        return self.steps if method.iterative else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> PruneSettings:
        """Rebuild from `to_dict()` output (unknown keys are an error: a stored job must match)."""
        return cls(**{**data, **overrides})


def setting_specs() -> list[SettingSpec]:
    """Every setting of `PruneSettings`, in declaration order."""
    hints = get_type_hints(PruneSettings)
    out = []
    for f in fields(PruneSettings):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        out.append(SettingSpec(name=f.name, type=hints[f.name], default=default, **f.metadata["spec"]))
    return out


def setting_spec(name: str) -> SettingSpec:
    return next(spec for spec in setting_specs() if spec.name == name)


def check_setting(spec: SettingSpec, value: Any) -> None:
    """Raise ConfigError naming the setting when `value` breaks its bounds or choices, or a
    switch is not a bool (a truthy string must not silently turn one on)."""
    if spec.type is bool and not isinstance(value, bool):
        raise ConfigError(f"{spec.name} must be true or false, not {value!r}", field=spec.name)
    if spec.min_items is not None and len(value) < spec.min_items:
        raise ConfigError(f"{spec.name} needs at least {spec.min_items} value(s)", field=spec.name)
    if spec.max_items is not None and len(value) > spec.max_items:
        raise ConfigError(f"{spec.name} takes at most {spec.max_items} values, not {len(value)}", field=spec.name)
    for item in value if isinstance(value, list) else [value]:
        if item is None:
            continue
        if spec.choices is not None and item not in spec.choices():
            raise ConfigError(
                f"unknown {spec.name} {item!r}; choose one of {', '.join(spec.choices())}", field=spec.name
            )
        if isinstance(item, str):
            continue
        if spec.ge is not None and item < spec.ge:
            raise ConfigError(f"{spec.name} must be at least {_num(spec.ge)}, not {item!r}", field=spec.name)
        if spec.le is not None and item > spec.le:
            raise ConfigError(f"{spec.name} must be at most {_num(spec.le)}, not {item!r}", field=spec.name)
        low = spec.gt if spec.gt is not None else float("-inf")
        high = spec.lt if spec.lt is not None else float("inf")
        if not low < item < high:
            raise ConfigError(f"{spec.name} {item!r} is outside ({low:g}, {high:g})", field=spec.name)


def _rounded_target(target: float) -> float:
    """Targets are kept to TARGET_DECIMALS decimals; one that rounds onto 0 or 1 is refused as sent."""
    rounded = round(float(target), TARGET_DECIMALS)
    if not 0 < rounded < 1:
        raise ConfigError(
            f"target {target!r} rounds to {rounded:g} (targets keep {TARGET_DECIMALS} decimals); "
            "give one inside (0, 1)",
            field="targets",
        )
    return rounded


def default_importance(objective: str) -> str:
    """`fisher` won our quality benchmark for perplexity-type objectives (docs/benchmarks.md);
    for `margin`, whose score is signed by design (∂L+ − ∂L−), the paper's `taylor` did as well
    or better, so it stays the default there."""
    return "taylor" if objective == "margin" else "fisher"
