"""T'yr's prune-and-search for one target: build the ladders around a starting allocation, search
one level per block, re-centre on the best and halve the step, for several rounds.

The starting allocation hits the target to within one MLP channel: `uniform` cuts every layer's
attention by the target share (rounded to whole KV groups) and spreads the MLP channels that make
up the rest evenly; `gisp` takes GISP's one-shot global ranking cut at the target (the hybrid).
The search never changes the removed parameter count, so the result has the start's sparsity.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager

from torch import Tensor

from gisp.masking import structure_masks, unit_masks
from gisp.methods.common import calibration_loss
from gisp.methods.search import SearchContext, SearchOutcome, SearchProgress, Verdict
from gisp.schedule import nearest_count
from gisp.structure import KINDS, ArchSpec, Structure
from gisp.tyr.fitness import DenseReference
from gisp.tyr.search import Space, evolve
from gisp.tyr.store import RoundStore, batches_sha256, clear_target
from gisp.tyr.supernet import Block, Supernet

log = logging.getLogger("gisp.tyr")

__all__ = ["SearchContext", "SearchOutcome", "SearchProgress", "TyrSession", "gisp_counts", "uniform_counts"]


def uniform_counts(spec: ArchSpec, target: float, protected: set[int]) -> dict[Block, int]:
    """Every unprotected layer's attention cut by `target` (whole KV groups), the MLP channels
    making up the rest of the target spread evenly (earlier layers take the remainder)."""
    layers = [layer for layer in range(spec.num_layers) if layer not in protected]
    kv = max(0, min(spec.num_kv_heads, round((1 - target) * spec.num_kv_heads)))
    counts: dict[Block, int] = {(layer, "attn"): kv for layer in layers}
    removed_attn = len(layers) * (spec.num_kv_heads - kv) * spec.unit_params("attn")
    need = target * spec.prunable_params - removed_attn
    channels = max(0, min(len(layers) * spec.intermediate_size, round(need / spec.unit_params("mlp"))))
    base, extra = divmod(channels, max(len(layers), 1))
    for i, layer in enumerate(layers):
        counts[(layer, "mlp")] = spec.intermediate_size - base - (1 if i < extra else 0)
    return counts


def structure_counts(structure: Structure, protected: set[int]) -> dict[Block, int]:
    return {
        (layer, kind): len(structure.kept(kind)[layer])
        for kind in KINDS
        for layer in range(len(structure.attn))
        if layer not in protected
    }


def gisp_counts(ctx: SearchContext, target: float) -> dict[Block, int]:
    """GISP's one-shot allocation at `target`: its global ranking of the dense model, cut there."""
    from gisp.methods.base import MethodContext, get_method  # the registry is filled by then
    from gisp.structure import Unit

    spec = ctx.adapter.spec
    structure = Structure.full(spec)
    candidates = [
        Unit(layer, kind, index)
        for kind in KINDS
        for layer, kept in enumerate(structure.kept(kind))
        if layer not in ctx.protected
        for index in kept
    ]
    s = ctx.settings
    ranking = get_method("gisp").rank(
        MethodContext(
            ctx.model,
            ctx.adapter,
            ctx.objective,
            ctx.batches,
            ctx.device,
            structure,
            candidates,
            s.importance,
            s.normalization,
            s.seed,
            1,
        )
    )
    sizes = [spec.unit_params(u.kind) for u in ranking.order]
    count = nearest_count(sizes, 0, target * spec.prunable_params)
    return structure_counts(structure.without(ranking.order[:count]), ctx.protected)


class TyrSession:
    """One run's search state across its targets (the dense reference is computed once)."""

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.reference = DenseReference(ctx.model, ctx.batches, s.tyr_top_k, s.batch_size, ctx.pad, ctx.device)
        available = self.reference.num_sequences
        self.stages = sorted({min(n, available) for n in s.tyr_stage_samples})
        self.keep = list(s.tyr_stage_keep)[: len(self.stages) - 1]
        self.net = Supernet(ctx.model, ctx.adapter, ctx.batches, ctx.device)
        self.data_sha = batches_sha256(ctx.batches) if ctx.state_dir is not None else ""

    def _store(self, target: float, number: int, plan: dict[Block, tuple[int, int]]) -> RoundStore | None:
        """Where this round's ladders and search state persist (None: the run has no folder)."""
        ctx, s = self.ctx, self.ctx.settings
        if ctx.state_dir is None:
            return None
        key = {
            "base": ctx.run_key,
            "dtype": s.dtype,
            "device": str(ctx.device),
            "data": self.data_sha,
            "seed": s.seed,
            "tyr": {k: v for k, v in sorted(s.to_dict().items()) if k.startswith("tyr_")},
            "target": target,
            "round": number,
            "plan": sorted([layer, kind, centre, step] for (layer, kind), (centre, step) in plan.items()),
        }
        store = RoundStore(ctx.state_dir, target, number, key)
        store.prune_siblings()
        return store

    def search(self, target: float) -> SearchOutcome:
        ctx, s, spec = self.ctx, self.ctx.settings, self.ctx.adapter.spec
        started = time.perf_counter()
        start = gisp_counts(ctx, target) if s.tyr_start == "gisp" else uniform_counts(spec, target, ctx.protected)
        blocks = sorted(start)
        ranked: list[tuple[dict[Block, int], float]] = [(dict(start), float("nan"))]
        store: RoundStore | None = None
        for round_index in range(s.tyr_rounds):
            ranked, store = self._round(target, round_index, blocks, ranked[0][0], started)
        if ctx.judge is None or s.tyr_refit != "stage" or not s.tyr_finalists:
            outcome = self._outcome(blocks, *ranked[0])
        else:
            outcome = self._judged(target, blocks, start, ranked, started, store)
        if ctx.state_dir is not None:
            state_dir = ctx.state_dir
            outcome.committed = lambda: clear_target(state_dir, target)
        return outcome

    def _report(
        self,
        target: float,
        number: int,
        phase: str,
        done: int,
        total: int,
        best: float | None,
        started: float,
        loaded: int = 0,
    ) -> None:
        seconds, rounds = time.perf_counter() - started, self.ctx.settings.tyr_rounds
        loaded = self.net.loaded if phase == "ladder" else loaded
        self.ctx.report(SearchProgress(target, number, rounds, phase, done, total, best, seconds, loaded))

    def _round(
        self, target: float, round_index: int, blocks: list[Block], centre: dict[Block, int], started: float
    ) -> tuple[list[tuple[dict[Block, int], float]], RoundStore | None]:
        """Ladders around `centre` with this round's step, then the search: the last population's
        allocations and fitness, best first (a round finished before an interruption: its best),
        and the round's store."""
        ctx, s, spec = self.ctx, self.ctx.settings, self.ctx.adapter.spec
        number, rounds = round_index + 1, s.tyr_rounds
        fraction = s.tyr_step / 2**round_index
        step = {kind: max(1, round(fraction * spec.units(kind))) for kind in KINDS}

        def report(phase: str, done: int, total: int, best: float | None) -> None:
            self._report(target, number, phase, done, total, best, started)

        plan = {b: (centre[b], step[b[1]]) for b in blocks}
        store = self._store(target, number, plan)
        last = number == rounds  # its ladders make the outcome
        if store is not None and not last and (done := store.load_result(blocks)) is not None:
            return [done], store  # finished before an interruption
        self.net.build(
            plan,
            s.tyr_levels,
            s.tyr_damp,
            s.tyr_update_rounds,
            lambda d, t: report("ladder", d, t, None),
            store,
            anchor=s.tyr_anchor,
        )
        ladders = [self.net.ladders[b] for b in blocks]

        def counts(genome: tuple[int, ...]) -> dict[Block, int]:
            return {b: ld.count(o) for b, ld, o in zip(blocks, ladders, genome, strict=True)}

        def score(genome: tuple[int, ...], sequences: int) -> float:
            with self.net.choose(counts(genome)):
                return self.reference.kl(sequences)

        space = Space(tuple(b[1] for b in blocks), lambda i, o: ladders[i].has(o), _trade(spec, step))
        evolved = evolve(
            tuple(0 for _ in blocks),
            space,
            score,
            s.tyr_population,
            s.tyr_offspring,
            s.tyr_generations,
            self.stages,
            self.keep,
            s.seed + round_index,
            lambda g: report("search", g.generation, g.generations, g.best),
            ctx.should_stop,
            resume=store.load_search() if store is not None else None,
            on_state=store.save_search if store is not None else None,
        )
        ranked = [(counts(g), f) for g, f in zip(evolved.ranked, evolved.fitness, strict=True)]
        if store is not None and not last:
            store.save_result(*ranked[0])
            store.drop_ladders()  # the next round re-centres: these are never read again
        return ranked, store

    def _judged(
        self,
        target: float,
        blocks: list[Block],
        start: dict[Block, int],
        ranked: list[tuple[dict[Block, int], float]],
        started: float,
        store: RoundStore | None,
    ) -> SearchOutcome:
        """The stage's choice among the search's best `tyr_finalists` allocations and its start:
        each refit by the stage without the held-back calibration sequences, the lowest loss on
        those wins. The start's units are the stage's to choose, so it competes only when the
        stage's variant selects them; the winner is measured as cut (the stage refits it later).
        Each verdict is stored as it comes: a resume judges only the finalists not yet judged."""
        ctx, s, spec = self.ctx, self.ctx.settings, self.ctx.adapter.spec
        judge = ctx.judge
        assert judge is not None
        finalists = [counts for counts, _ in ranked[: s.tyr_finalists]]
        offered = [self._structure(blocks, counts) for counts in finalists]
        if judge.chooses_units and start not in finalists:
            finalists.append(start)
            offered.append(_first_units(spec, start))
        layers, total = spec.num_layers, len(offered) * spec.num_layers
        refit = {k: v for k, v in sorted(s.to_dict().items()) if k.startswith("reconstruct")}
        stored = store.load_verdicts(refit) if store is not None else []
        verdicts: list[Verdict] = []
        for (was, verdict), now in zip(stored, offered, strict=False):  # the prefix judged before a stop
            if was != now:
                break
            verdicts.append(verdict)
        read = len(verdicts) * layers  # judged before an interruption, read back

        def report(done: int) -> None:
            self._report(target, s.tyr_rounds, "finalists", done, total, None, started, min(done, read))

        for i in range(len(verdicts)):
            report((i + 1) * layers)
        for i in range(len(verdicts), len(offered)):
            verdicts.append(judge.judge(offered[i], lambda done, _, i=i: report(i * layers + done), ctx.should_stop))
            if store is not None:
                store.save_verdicts(list(zip(offered, verdicts, strict=False)), refit)
        best = min(range(len(verdicts)), key=lambda i: (verdicts[i].held_loss, i))
        log.info(
            "target %g: the stage's refit of %s has the lowest held-back loss of %d finalists, %.4f",
            target,
            "the start" if finalists[best] is start else f"the search's #{best + 1}",
            len(verdicts),
            verdicts[best].held_loss,
        )
        structure = verdicts[best].structure

        def applied() -> AbstractContextManager:
            full = Structure.full(spec)
            return unit_masks(ctx.model, ctx.adapter, structure_masks(ctx.adapter, full, structure))

        with applied():
            loss = calibration_loss(ctx)  # type: ignore[arg-type]  (has the fields it reads)
            fitness = self.reference.kl(self.stages[-1])
        return SearchOutcome(structure, {}, loss, fitness, applied)

    def _structure(self, blocks: list[Block], counts: dict[Block, int]) -> Structure:
        """The structure of an allocation on this round's ladders: each block's rung's units."""
        full = Structure.full(self.ctx.adapter.spec)
        kept = {kind: [list(x) for x in full.kept(kind)] for kind in KINDS}
        for layer, kind in blocks:
            kept[kind][layer] = list(self.net.ladders[(layer, kind)].rungs[counts[(layer, kind)]].kept)
        return Structure(attn=kept["attn"], mlp=kept["mlp"])

    def _outcome(self, blocks: list[Block], counts: dict[Block, int], fitness: float) -> SearchOutcome:
        """The search's best with its ladder's re-solved output projections."""
        names = {id(m): n for n, m in self.ctx.model.named_modules()}
        weights: dict[str, Tensor] = {}
        for block in blocks:
            ladder_ = self.net.ladders[block]
            rung = ladder_.rungs[counts[block]]
            if counts[block] < ladder_.units and rung.kept:
                weights[f"{names[id(self.net.module(block))]}.weight"] = rung.weight.clone()
        structure = self._structure(blocks, counts)

        def applied() -> AbstractContextManager:
            return self.net.choose(counts)

        with applied():
            loss = calibration_loss(self.ctx)  # type: ignore[arg-type]  (has the fields it reads)
        return SearchOutcome(structure, weights, loss, fitness, applied)


def _first_units(spec: ArchSpec, counts: dict[Block, int]) -> Structure:
    """An allocation as a structure whose units are each block's first ones (for a refit that
    chooses the units itself, which of them stand here does not matter)."""
    full = Structure.full(spec)
    kept = {kind: [list(x) for x in full.kept(kind)] for kind in KINDS}
    for (layer, kind), count in counts.items():
        kept[kind][layer] = kept[kind][layer][:count]
    return Structure(attn=kept["attn"], mlp=kept["mlp"])


def _trade(spec: ArchSpec, step: dict[str, int]) -> int | None:
    """MLP steps one attention step is worth, when that is a whole number."""
    attn, mlp = step["attn"] * spec.unit_params("attn"), step["mlp"] * spec.unit_params("mlp")
    return attn // mlp if attn % mlp == 0 else None
