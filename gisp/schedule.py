"""The linear schedule and exact target hitting.

Step k of S aims at max_target·k/S. Within a step units go in rank order; a goal (a step end or a
requested target) is met by the removal count whose removed parameters come nearest to it, so
every target is hit to within one unit and every recorded structure is nested in the one before.
"""

from __future__ import annotations

from collections.abc import Sequence

from gisp.structure import Structure, Unit


def linear_goal(max_target: float, steps: int, step: int) -> float:
    """The goal of `step` (1-based) of `steps`; computed per step, so no list of `steps` entries
    (a number the client chose) is ever built."""
    return max_target * step / steps


def nearest_count(unit_params: Sequence[int], already_removed: int, goal_params: float, start: int = 0) -> int:
    """How many of `unit_params` (in order, from `start`) to remove so that the removed total
    comes nearest to `goal_params`. Never fewer than `start`."""
    removed = already_removed + sum(unit_params[:start])
    count = start
    while count < len(unit_params):
        after = removed + unit_params[count]
        if abs(after - goal_params) < abs(removed - goal_params):
            removed, count = after, count + 1
        else:
            break
    return count


def defer_below_floor(order: Sequence[Unit], structure: Structure, min_kv_groups: int) -> list[Unit]:
    """`order` with every attention unit that would leave its layer fewer than `min_kv_groups` KV
    groups moved to the end (in their order): they go only when a target cannot be reached
    without them. A global ranking otherwise empties whole layers' attention, which a refit of
    the layer's output projections cannot give back (docs/benchmarks.md §8)."""
    if min_kv_groups <= 0:
        return list(order)
    left = {layer: len(kept) for layer, kept in enumerate(structure.attn)}
    first, deferred = [], []
    for unit in order:
        if unit.kind == "attn":
            if left[unit.layer] <= min_kv_groups:
                deferred.append(unit)
                continue
            left[unit.layer] -= 1
        first.append(unit)
    return first + deferred
