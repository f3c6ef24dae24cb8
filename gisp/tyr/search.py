"""Evolutionary search over one level per block, every candidate at exactly the same sparsity.

A genome is one level offset per block (0: the ladder's centre, +1: one step sparser). Offspring
mutate by moving one step from one block to another of the same kind (both ladders step by the
same number of units, so the removed parameter count is unchanged), or, where the unit sizes
divide, by trading one attention step for the MLP steps of exactly the same parameter count. So
every candidate removes exactly as many parameters as the starting allocation.

Selection is multi-stage: all offspring are scored on the first few calibration sequences, the
best `keep[0]` on more, and so on; the last stage's sequences score the population too, so that
survivors and parents compare on the same tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from gisp.errors import PruningStopped

Genome = tuple[int, ...]


@dataclass(frozen=True)
class Space:
    """What a genome may be: `kinds[i]` is block i's kind, `valid(i, offset)` whether its ladder
    has that level; `trade` is how many MLP steps one attention step is worth in parameters, when
    that is a whole number (else None: no cross-kind moves)."""

    kinds: tuple[str, ...]
    valid: Callable[[int, int], bool]
    trade: int | None = None


def mutate(genome: Genome, space: Space, rng: random.Random, moves: int) -> Genome:
    g = list(genome)
    by_kind: dict[str, list[int]] = {}
    for i, kind in enumerate(space.kinds):
        by_kind.setdefault(kind, []).append(i)
    for _ in range(moves):
        options = [k for k, idx in by_kind.items() if len(idx) >= 2]
        if space.trade and "attn" in by_kind and "mlp" in by_kind:
            options.append("trade")
        if not options:
            break
        choice = rng.choice(options)
        if choice == "trade":
            sign = rng.choice((1, -1))  # +1: attention sparser, MLP denser
            attn = [i for i in by_kind["attn"] if space.valid(i, g[i] + sign)]
            if not attn:
                continue
            a = rng.choice(attn)
            picks, trial = [], list(g)
            for _step_index in range(space.trade):
                mlp = [i for i in by_kind["mlp"] if space.valid(i, trial[i] - sign)]
                if not mlp:
                    break
                m = rng.choice(mlp)
                trial[m] -= sign
                picks.append(m)
            if len(picks) == space.trade:
                trial[a] += sign
                g = trial
            continue
        idx = by_kind[choice]
        ups = [i for i in idx if space.valid(i, g[i] + 1)]
        downs = [i for i in idx if space.valid(i, g[i] - 1)]
        pairs = [(u, d) for u in ups for d in downs if u != d]
        if not pairs:
            continue
        u, d = rng.choice(pairs)
        g[u] += 1
        g[d] -= 1
    return tuple(g)


class Evolved(NamedTuple):
    """The last population, best first, with each one's fitness on the last stage's sequences."""

    ranked: list[Genome]
    fitness: list[float]

    @property
    def best(self) -> Genome:
        return self.ranked[0]


@dataclass
class Generation:
    generation: int
    generations: int
    best: float  # fitness of the best genome so far (last-stage tokens)
    evaluated: int  # candidate scorings so far


def evolve(
    start: Genome,
    space: Space,
    score: Callable[[Genome, int], float],
    population: int,
    offspring: int,
    generations: int,
    stages: list[int],
    keep: list[int],
    seed: int,
    on_generation: Callable[[Generation], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: dict[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
) -> Evolved:
    """The last population, ranked by fitness on `stages[-1]` sequences (lower is better).
    `stages` are sequence counts, increasing; `keep[i]` survivors go from stage i to i+1.
    `on_state` is given the whole search state (JSON-able) once the population is ranked and
    after every generation; `resume` is such a state to continue from: the same calls then give
    the same result as a search never interrupted."""
    rng = random.Random(seed)
    memo: dict[tuple[Genome, int], float] = {}
    final = stages[-1]

    def fit(genome: Genome, sequences: int) -> float:
        key = (genome, sequences)
        if key not in memo:
            memo[key] = score(genome, sequences)
        return memo[key]

    def breed(parents: list[Genome], count: int) -> list[Genome]:
        """Up to `count` new genomes mutated from `parents` (fewer when the space runs out)."""
        seen, children = set(parents), []
        for _ in range(count * 8):
            if len(children) >= count:
                break
            moves = 1 if rng.random() < 0.6 else rng.randint(2, 3)  # mostly local steps, some jumps
            child = mutate(rng.choice(parents), space, rng, moves)
            if child not in seen:
                seen.add(child)
                children.append(child)
        return children

    def state(generation: int) -> dict[str, Any]:
        version, internal, gauss = rng.getstate()
        return {
            "generation": generation,
            "ranked": [list(g) for g in ranked],
            "memo": [[list(g), n, value] for (g, n), value in memo.items()],
            "rng": [version, list(internal), gauss],
        }

    if generations == 0:  # no search: the start itself (the local pruner alone)
        return Evolved([start], [fit(start, final)])
    if resume is not None:
        ranked = [tuple(g) for g in resume["ranked"]]
        memo.update({(tuple(g), int(n)): float(value) for g, n, value in resume["memo"]})
        version, internal, gauss = resume["rng"]
        rng.setstate((version, tuple(internal), gauss))
        done = int(resume["generation"])
    else:
        members = [start] + breed([start], population - 1)
        ranked = sorted(members, key=lambda g: (fit(g, final), g))
        done = 0
        if on_state is not None:
            on_state(state(0))
    for generation in range(done + 1, generations + 1):
        if should_stop is not None and should_stop():
            raise PruningStopped(f"stopped before search generation {generation} of {generations}")
        children = breed(ranked, offspring)
        for stage, sequences in enumerate(stages[:-1]):
            children = sorted(children, key=lambda g, n=sequences: (fit(g, n), g))[: keep[stage]]
        ranked = sorted(set(ranked) | set(children), key=lambda g: (fit(g, final), g))[:population]
        if on_state is not None:
            on_state(state(generation))
        if on_generation is not None:
            on_generation(Generation(generation, generations, fit(ranked[0], final), len(memo)))
    return Evolved(ranked, [fit(g, final) for g in ranked])
