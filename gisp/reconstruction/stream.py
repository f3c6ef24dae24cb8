"""Layer-streamed reconstruction of one checkpoint from the dense model.

The calibration tokens are run through the dense model once to catch every layer's inputs; then,
layer by layer, the dense layer gives the targets (its o_proj and down_proj outputs) and a pruned
copy of that one layer, fed the pruned model's own hidden states (through the layers already
reconstructed, so errors propagate), gives the inputs. Memory beyond the dense model: the dense
and the pruned hidden states of the calibration tokens, one layer copy, one Gram matrix. The dense
model is never changed, so every checkpoint is reconstructed from the same weights.

With `inputs`, each block's input projections (q/k/v, gate/up: the rows of its kept units) are
re-fitted first, so that fed the pruned model's hidden states they reproduce the dense block's
projections; the output projection is then fitted on what those refitted rows compute.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from gisp.adapters import ArchitectureAdapter
from gisp.errors import PruningStopped, ReconstructionError
from gisp.hf_remote.modeling_gisp import EmptyAttention
from gisp.objectives import Batch
from gisp.reconstruction.base import ProjectionStats, Reconstruction, Refit
from gisp.reconstruction.builtin import cut_weight, solve_kept
from gisp.reconstruction.solve import GramAccumulator, ridge_solve
from gisp.slots import unit_slots
from gisp.structure import Kind, Structure

log = logging.getLogger("gisp")
PROJECTION = {"attn": "o_proj", "mlp": "down_proj"}
HOLD_EVERY = 4  # every 4th calibration sequence validates the refit (when there are at least 4)
RIDGE_STEPS = 4  # ridge terms tried: λ, 10λ, 100λ, 1000λ


class _Caught(Exception):
    pass


@dataclass
class LayerInput:
    """One calibration batch at one layer: the call's keyword arguments and the real tokens."""

    kwargs: dict[str, Any]
    tokens: Tensor  # bool [batch, seq]: not padding
    held: Tensor  # bool [batch, seq]: tokens of the held-back sequences (every HOLD_EVERY-th) that validate a refit


@dataclass
class Hooks:
    """What the stream reports: progress (layers done, of), warnings, and when to stop."""

    progress: Callable[[int, int], None] = lambda done, total: None
    warn: Callable[[str], None] = lambda message: None
    should_stop: Callable[[], bool] = lambda: False


@dataclass
class _Drift:
    """What a block's refit needs to cancel the residual stream's drift: the dense stream entering
    the block per batch; the pruned layer's earlier block (its output, added to the pruned hidden
    states, gives the pruned stream; None for the first block); the share of the drift to cancel."""

    dense: list[Tensor]
    branch: nn.Module | None
    share: float


@dataclass
class Result:
    structure: Structure  # what the checkpoint keeps (the given one unless the variant selects)
    tensors: dict[str, Tensor] = field(default_factory=dict)  # compact-model state-dict names


def _output(value: Any) -> Tensor:
    return value[0] if isinstance(value, tuple) else value


@torch.no_grad()
def catch_inputs(
    model: nn.Module, adapter: ArchitectureAdapter, batches: list[Batch]
) -> tuple[list[Tensor], list[list[LayerInput]]]:
    """Layer 0's hidden states per batch, and every layer's call arguments per batch (one dense
    forward each; the layers of one model may get different masks, e.g. sliding windows)."""
    layers = adapter.layers(model)
    device = next(model.parameters()).device
    hidden: list[Tensor] = []
    calls: list[list[LayerInput]] = [[] for _ in layers]
    sequences = sum(int(b.input_ids.shape[0]) for b in batches)
    seen = 0
    for batch in batches:
        batch = batch.to(device)
        tokens = batch.attention_mask.bool()
        order = torch.arange(seen, seen + tokens.shape[0], device=tokens.device)
        held = tokens & ((order % HOLD_EVERY == HOLD_EVERY - 1) & (sequences >= HOLD_EVERY))[:, None]
        seen += tokens.shape[0]
        handles = []

        def catch(
            module: nn.Module, args: tuple, kwargs: dict, index: int, tokens: Tensor = tokens, held: Tensor = held
        ) -> None:
            kw = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "past_key_values", "cache")}
            kw["use_cache"] = False
            calls[index].append(LayerInput(kw, tokens, held))
            if index == 0:
                hidden.append((args[0] if args else kwargs["hidden_states"]).detach())
            if index == len(layers) - 1:
                raise _Caught

        for index, layer in enumerate(layers):
            handles.append(
                layer.register_forward_pre_hook(lambda m, a, k, index=index: catch(m, a, k, index), with_kwargs=True)
            )
        try:
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        except _Caught:
            pass
        finally:
            for handle in handles:
                handle.remove()
    return hidden, calls


@torch.no_grad()
def _run_layer(
    layer: nn.Module, hidden: list[Tensor], calls: list[LayerInput], taps: dict[nn.Module, Callable] | None = None
) -> list[Tensor]:
    """`layer` on every batch; `taps` see each (module, input, output, batch index)."""
    out, handles = [], []
    current = [0]
    for module, tap in (taps or {}).items():
        handles.append(module.register_forward_hook(lambda m, a, o, tap=tap: tap(a[0] if a else None, o, current[0])))
    try:
        for index, (h, call) in enumerate(zip(hidden, calls, strict=True)):
            current[0] = index
            out.append(_output(layer(h, **call.kwargs)))
    finally:
        for handle in handles:
            handle.remove()
    return out


def _projection(adapter: ArchitectureAdapter, layer: nn.Module, kind: Kind) -> nn.Linear | None:
    return adapter.unit_output_module(layer, kind)  # type: ignore[return-value]


def input_projections(adapter: ArchitectureAdapter, layer: nn.Module, kind: Kind) -> list[tuple[nn.Linear, int]]:
    """The block's input projections (their output rows are the units': q/k/v, gate/up), each with
    its rows per unit; they all read the same input. Empty for a layer with no attention left."""
    return [
        (g.module, g.unit_size)  # type: ignore[misc]
        for g in adapter.weight_groups(layer, kind)
        if g.name == "weight" and g.axis == 0
    ]


class _DenseInputTargets:
    """The dense layer's input-projection outputs per batch (biases off), concatenated per block."""

    def __init__(self, modules: list[tuple[nn.Linear, int]]) -> None:
        self.modules = modules
        self.outputs: dict[nn.Module, list[Tensor]] = {m: [] for m, _ in modules}

    def taps(self) -> dict[nn.Module, Callable]:
        def tap(x: Tensor, y: Tensor, index: int, module: nn.Linear) -> None:
            self.outputs[module].append(y if module.bias is None else y - module.bias)

        return {m: (lambda x, y, b, m=m: tap(x, y, b, m)) for m, _ in self.modules}

    def rows(self, units: list[int]) -> list[Tensor]:
        """Per module, the output rows of `units` (base-model unit indices)."""
        return [unit_slots(units, size) for _, size in self.modules]

    def batch(self, index: int, rows: list[Tensor]) -> Tensor:
        """Batch `index`'s targets for the rows given: [batch, seq, Σ rows]."""
        return torch.cat(
            [
                self.outputs[m][index].index_select(-1, r.to(self.outputs[m][index].device))
                for (m, _), r in zip(self.modules, rows, strict=True)
            ],
            dim=-1,
        )


class _DenseTargets:
    """The dense layer's projection outputs per batch (bias off) and the mean of their inputs."""

    def __init__(self, module: nn.Linear) -> None:
        self.module, self.outputs = module, []
        self.sum: Tensor | None = None
        self.count = 0

    def tap(self, x: Tensor, y: Tensor, index: int, tokens: Tensor) -> None:
        rows = x[tokens].to(torch.float64)
        self.sum = rows.sum(0) if self.sum is None else self.sum + rows.sum(0)
        self.count += rows.shape[0]
        self.outputs.append(y if self.module.bias is None else y - self.module.bias)

    @property
    def mean(self) -> Tensor:
        assert self.sum is not None
        return self.sum / max(self.count, 1)


def reconstruct(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    structure: Structure,
    batches: list[Batch],
    variant: Reconstruction,
    damp: float,
    candidates: Structure | None = None,
    hooks: Hooks | None = None,
    caught: tuple[list[Tensor], list[list[LayerInput]]] | None = None,
    holdout: bool = False,
    inputs: bool = False,
    residual: float = 0.0,
    local: bool = False,
) -> Result:
    """The checkpoint `structure` of the dense `model`, its output projections re-fitted.

    `candidates` (a superset of `structure`, default the full model) is what a selecting variant
    may choose from in each layer; the others keep `structure`. `caught` reuses `catch_inputs`.
    `holdout`: a validating variant's final weights are solved without the held-back sequences
    (not re-solved on every sequence), so those stay unseen for an end-to-end check. `inputs`: the
    blocks' input projections are re-fitted too (before their output projection). `residual` (0–1): each
    output projection's target also carries that share of the residual stream's drift (the dense
    stream entering the block less the pruned one), so the refit cancels what earlier layers' cuts
    left, where it can. `local`: each output projection is fitted instead to what the uncut dense
    projection computes on the pruned model's own inputs (the dense layer fed the pruned stream; for
    the MLP, after the refit attention): only the layer's own cut is made good, as SparseGPT and
    T'yr fit; `inputs` and `residual` then have nothing to fit and are ignored."""
    if local:
        inputs, residual = False, 0.0
    hooks = hooks or Hooks()
    spec = adapter.spec
    layers = adapter.layers(model)
    names = {module: name for name, module in model.named_modules()}
    dense_h, calls = caught or catch_inputs(model, adapter, batches)
    pruned_h = list(dense_h)
    offer = candidates or Structure.full(spec)
    kept = Structure(attn=[], mlp=[])
    tensors: dict[str, Tensor] = {}
    for index, layer in enumerate(layers):
        if hooks.should_stop():
            raise PruningStopped(f"stopped during reconstruction, before layer {index}")
        call = calls[index]
        targets = {kind: _DenseTargets(_projection(adapter, layer, kind)) for kind in PROJECTION}
        taps = {  # a local target is taken on the pruned stream below: no dense outputs to keep
            t.module: (lambda x, y, b, t=t, call=call: t.tap(x, y, b, call[b].tokens))
            for t in ([] if local else targets.values())
        }
        in_targets = {
            kind: _DenseInputTargets(input_projections(adapter, layer, kind) if inputs else []) for kind in PROJECTION
        }
        for t in in_targets.values():
            taps.update(t.taps())
        dense_mid: list[Tensor] = []  # the dense residual stream between the attention and the MLP
        if residual:
            taps[adapter.residual_branch(layer, "attn")] = lambda x, y, b, mid=dense_mid, h=dense_h: mid.append(
                h[b] + _output(y)
            )
        dense_next = _run_layer(layer, dense_h, call, taps)
        work = copy.deepcopy(layer)
        for kind in PROJECTION:
            base_units = spec.units(kind)
            pool = offer.kept(kind)[index] if variant.selects else structure.kept(kind)[index]
            if pool != list(range(base_units)):
                adapter.slice_layer(work, kind, pool)
            if inputs and pool:
                _refit_inputs(
                    work, kind, index, pool, in_targets[kind], pruned_h, call, variant, damp, adapter, holdout
                )
            if local:
                targets[kind] = _local_targets(adapter, layer, work, kind, pruned_h, call)
            drift = None  # with no share to cancel, no drift is computed for either block
            if residual:
                branch = None if kind == "attn" else adapter.residual_branch(work, "attn")
                drift = _Drift(dense_h if kind == "attn" else dense_mid, branch, residual)
            keep = _refit_projection(
                adapter,
                work,
                kind,
                index,
                pool,
                structure.kept(kind)[index],
                targets[kind],
                pruned_h,
                call,
                variant,
                damp,
                hooks,
                holdout,
                drift,
            )
            kept.kept(kind).append(keep)
        pruned_h = _run_layer(work, pruned_h, call)
        for h in pruned_h:
            if not torch.isfinite(h).all():
                raise ReconstructionError(
                    f"layer {index}: the reconstructed layer's output is not finite", field="reconstruct"
                )
        tensors.update(_layer_tensors(adapter, work, layer, names, inputs))
        dense_h = dense_next
        del work
        hooks.progress(index + 1, len(layers))
    return Result(kept, tensors)


def _local_targets(
    adapter: ArchitectureAdapter,
    layer: nn.Module,
    work: nn.Module,
    kind: Kind,
    pruned_h: list[Tensor],
    call: list[LayerInput],
) -> _DenseTargets:
    """The dense projection's outputs on the pruned model's stream: the dense `layer` fed the pruned
    hidden states; for the MLP, with `work`'s (already refit) attention in place of the dense one, so
    the MLP sees the stream the pruned model gives it."""
    source = layer
    if kind == "mlp":
        dense_attn = adapter.residual_branch(layer, "attn")
        name = next(n for n, m in layer.named_children() if m is dense_attn)
        source = copy.copy(layer)  # shares every weight; its own table of children, so `layer` is untouched
        source._modules = dict(layer._modules)
        source._modules[name] = adapter.residual_branch(work, "attn")
    module = _projection(adapter, layer, kind)
    local = _DenseTargets(module)  # type: ignore[arg-type]
    _run_layer(source, pruned_h, call, {module: lambda x, y, b: local.tap(x, y, b, call[b].tokens)})
    return local


def _refit_inputs(
    work: nn.Module,
    kind: Kind,
    index: int,
    pool: list[int],
    targets: _DenseInputTargets,
    pruned_h: list[Tensor],
    call: list[LayerInput],
    variant: Reconstruction,
    damp: float,
    adapter: ArchitectureAdapter,
    holdout: bool = False,
) -> None:
    """Re-fit `work`'s input projections of `kind` (sliced to `pool`) so that, fed the pruned model's
    hidden states, their rows reproduce the dense layer's: one ridge solve over the shared input's
    Gram matrix for all of them, its λ chosen on the held-back sequences as for the output
    projections (or the weights as they are, when no λ fits those better)."""
    modules = input_projections(adapter, work, kind)
    if not modules:
        return
    what = f"layer {index} {'/'.join(_module_name(work, m) for m, _ in modules)}"
    rows = targets.rows(pool)
    width = modules[0][0].in_features
    acc, val = GramAccumulator(width), GramAccumulator(width)

    def tap(x: Tensor, y: Tensor, b: int) -> None:
        wanted = targets.batch(b, rows)
        acc.add(x[call[b].tokens], wanted[call[b].tokens])
        if call[b].held.any():
            val.add(x[call[b].held], wanted[call[b].held])

    _run_layer(work, pruned_h, call, {modules[0][0]: tap})
    assert acc.gram is not None and acc.cross is not None
    current = torch.cat([m.weight.detach() for m, _ in modules], dim=0).T.to(acc.gram.device, torch.float64)
    prior = current if variant.anchored else None
    damp_used: float | None = damp
    fit_gram, fit_cross = acc.gram, acc.cross
    if variant.validates and 0 < val.count < acc.count and val.gram is not None and val.cross is not None:
        train_gram, train_cross = acc.gram - val.gram, acc.cross - val.cross
        damp_used = _ladder(
            lambda d: ridge_solve(train_gram, train_cross, d, what=what, prior=prior),
            lambda w: _held_error(val, w),
            damp,
            current,
        )
        if damp_used is None:
            log.info("%s: the refit does not beat the weights as they are on held-back tokens; keeping them", what)
            return
        if holdout:
            fit_gram, fit_cross = train_gram, train_cross
    weight = ridge_solve(fit_gram, fit_cross, damp_used, what=what, prior=prior)
    start = 0
    for module, _ in modules:
        rows_here = module.out_features
        part = weight[:, start : start + rows_here].T
        module.weight.data = part.to(dtype=module.weight.dtype, device=module.weight.device).contiguous()
        start += rows_here


def _module_name(layer: nn.Module, module: nn.Module) -> str:
    """`module`'s attribute name inside `layer` (q_proj, gate_proj, …), for logs and errors."""
    return next((n.rsplit(".", 1)[-1] for n, m in layer.named_modules() if m is module), "projection")


def _held_error(val: GramAccumulator, weight: Tensor, cols: Tensor | None = None) -> float:
    """‖XW − Y‖² on the held-back tokens, less the constant ‖Y‖², from their Gram statistics
    (W [in, out]; `cols`: the input columns it reads, default all)."""
    assert val.gram is not None and val.cross is not None
    gram, cross = val.gram, val.cross
    if cols is not None:
        cols = cols.to(gram.device)
        gram, cross = gram[cols][:, cols], cross[cols]
    w = weight.to(device=gram.device, dtype=torch.float64)
    return float((w * (gram @ w)).sum() - 2 * (w * cross).sum())


def _ladder(
    solve: Callable[[float], Tensor], error: Callable[[Tensor], float], damp: float, unchanged: Tensor
) -> float | None:
    """The ridge term, of λ, 10λ, 100λ, 1000λ (or a fixed grid when λ is 0), whose solve on the
    training sequences fits the held-back ones best; None when the weights left unchanged fit them
    better still. Shared by the input and the output refits, so both fall back the same way."""
    grid = [damp * 10**k for k in range(RIDGE_STEPS)] if damp > 0 else [0.0, 1e-3, 1e-2, 1e-1]
    scored: list[tuple[float, float | None]] = [(error(solve(d)), d) for d in grid]
    scored.append((error(unchanged), None))
    return min(scored, key=lambda s: (s[0], s[1] is None))[1]


def _refit_projection(
    adapter: ArchitectureAdapter,
    work: nn.Module,
    kind: Kind,
    index: int,
    pool: list[int],
    keep: list[int],
    targets: _DenseTargets,
    pruned_h: list[Tensor],
    call: list[LayerInput],
    variant: Reconstruction,
    damp: float,
    hooks: Hooks,
    holdout: bool = False,
    residual: _Drift | None = None,
) -> list[int]:
    """Fit `work`'s projection of `kind` (sliced to `pool`), slice it to what stays, return that.

    `residual`: the target is then the dense output plus that share of the drift between the dense
    and the pruned residual streams entering the block."""
    what = f"layer {index} {PROJECTION[kind]}"
    size = adapter.output_unit_size(kind)
    dense = targets.module
    module = _projection(adapter, work, kind)
    val = GramAccumulator(len(pool) * size)
    if module is None or not pool:
        gram = torch.zeros(0, 0, dtype=torch.float64)
        acc = None
    else:
        acc = GramAccumulator(len(pool) * size)
        before: dict[int, Tensor] = {}  # per batch, the pruned layer's earlier block's output

        def wanted(b: int) -> Tensor:
            if residual is None:
                return targets.outputs[b]
            stream = pruned_h[b] if residual.branch is None else pruned_h[b] + before.pop(b)
            return targets.outputs[b] + residual.share * (residual.dense[b] - stream)

        def tap(x: Tensor, y: Tensor, b: int) -> None:
            y_b = wanted(b)
            acc.add(x[call[b].tokens], y_b[call[b].tokens])
            if call[b].held.any():
                val.add(x[call[b].held], y_b[call[b].held])

        taps: dict[nn.Module, Callable] = {module: tap}
        if residual is not None and residual.branch is not None:
            taps[residual.branch] = lambda x, y, b: before.__setitem__(b, _output(y))
        _run_layer(work, pruned_h, call, taps)
        gram = acc.gram
        if acc.count < len(pool) * size:
            message = (
                f"{what}: {acc.count} calibration tokens for {len(pool) * size} inputs; the ridge term decides the rest"
            )
            log.warning(message)
            hooks.warn(message)
    stats = ProjectionStats(
        what=what,
        unit_size=size,
        candidates=pool,
        keep=keep,
        dense_weight=dense.weight.detach(),
        dense_bias=None if dense.bias is None else dense.bias.detach(),
        dense_mean=targets.mean,
        gram=gram,
        cross=acc.cross
        if acc is not None and acc.cross is not None
        else torch.zeros(0, dense.out_features, dtype=torch.float64),
        tokens=acc.count if acc is not None else 0,
        damp=damp,
    )
    validated = variant.validates and acc is not None
    refit = _validated(variant, stats, val, holdout) if validated else variant.refit(stats)
    if refit.keep != pool:
        position = {u: p for p, u in enumerate(pool)}
        adapter.slice_layer(work, kind, [position[u] for u in refit.keep])
    module = _projection(adapter, work, kind)
    if module is not None:
        module.weight.data = refit.weight.to(dtype=module.weight.dtype, device=module.weight.device).contiguous()
    if refit.bias is not None:
        bias = nn.Parameter(refit.bias.to(dtype=dense.weight.dtype, device=dense.weight.device))
        if module is not None:
            module.bias = bias
        elif isinstance(work.self_attn, EmptyAttention):
            work.self_attn.o_bias = bias
        else:  # an MLP with no channels left has a down_proj of width 0: it keeps its bias
            raise ReconstructionError(f"{what}: nowhere to put the bias", field="reconstruct")
    return refit.keep


def _validated(variant: Reconstruction, stats: ProjectionStats, val: GramAccumulator, holdout: bool = False) -> Refit:
    """The variant's refit, its ridge term chosen on held-back sequences: the units that stay are the
    variant's choice (made once, on every sequence); their weights are solved on the other sequences
    with λ, 10λ, 100λ, 1000λ, and whichever of those, or the weights as cut, fits the held-back ones
    best is kept (re-solved on every sequence). A refit that does not generalise (too few tokens for
    the layer's width) so falls back to more damping or to none. With `holdout` the choice of units
    and the final solve use the other sequences only: the held-back ones stay unseen by the weights."""
    if val.count == 0 or val.count >= stats.tokens or val.gram is None or val.cross is None:
        return variant.refit(stats)
    train = replace(stats, gram=stats.gram - val.gram, cross=stats.cross - val.cross, tokens=stats.tokens - val.count)
    fit = train if holdout else stats
    chosen = variant.refit(fit)
    keep = chosen.keep
    cols = stats.columns(keep, stats.candidates)
    cut = cut_weight(stats, keep)
    damp = _ladder(
        lambda d: solve_kept(replace(train, damp=d), keep, variant.anchored).T,
        lambda w: _held_error(val, w, cols),
        stats.damp,
        cut.T,
    )
    if damp is None:
        log.info("%s: the refit does not beat the weights as cut on held-back tokens; keeping them", stats.what)
        return Refit(keep, cut, None)
    if damp == stats.damp:
        return chosen
    return Refit(keep, solve_kept(replace(fit, damp=damp), keep, variant.anchored), None)


def _layer_tensors(
    adapter: ArchitectureAdapter, work: nn.Module, dense: nn.Module, names: dict, inputs: bool = False
) -> dict[str, Tensor]:
    """The output projections of the reconstructed layer (and with `inputs` its input projections'
    weights), by their state-dict names."""
    out: dict[str, Tensor] = {}
    for kind in PROJECTION if inputs else ():
        mine, theirs = input_projections(adapter, work, kind), input_projections(adapter, dense, kind)
        for (module, _), (dense_module, _) in zip(mine, theirs, strict=False):
            out[f"{names[dense_module]}.weight"] = module.weight.detach().clone()
    for kind in PROJECTION:
        module = _projection(adapter, work, kind)
        dense_module = _projection(adapter, dense, kind)
        prefix = names[dense_module]
        if module is not None:
            out[f"{prefix}.weight"] = module.weight.detach().clone()
            if module.bias is not None:
                out[f"{prefix}.bias"] = module.bias.detach().clone()
        elif isinstance(work.self_attn, EmptyAttention) and work.self_attn.o_bias is not None:
            out[f"{prefix.rsplit('.', 1)[0]}.o_bias"] = work.self_attn.o_bias.detach().clone()
    return out
