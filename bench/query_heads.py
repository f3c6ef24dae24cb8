"""Does T'yr's finer attention unit, the single query head, pay here? Attention-only pruning with the
KV group (this engine's unit) against single query heads, same selection and same re-solve.

Issue 10 asks whether the official code's attention unit (one query head: its q_proj rows and
o_proj columns, k/v never removed) is worth having. This isolates the unit: the MLP stays dense,
every layer loses the same amount of attention, and each layer's units are chosen by T'yr's local
pruner (`gisp.tyr.local`: greedy grouped-OBS removal on the Gram matrix of o_proj's inputs, weight
updates between rounds, then the kept o_proj columns re-solved), layer after layer with errors
propagated (layer l's Gram matrix is taken with layers < l pruned). Rows differ only in the unit:

- `kv-group r`: r KV groups per layer, each with its query heads and its k/v rows;
- `query-heads, r groups' weights`: single query heads chosen freely, one per round, until the
  layer has lost as many weights as r KV groups hold (a group left with no head loses k/v too);
- `query-head k/group`: k query heads from every group, the only head cut that the exports write
  exactly without padding (every group keeps the same heads-per-group count).

Sizes are counted two ways. *As pruned*: the weights the cut removes. *As exported*: what the
GGUF/HF/vLLM layouts can drop, where each layer has one heads-per-group count, so a layer whose
groups kept different numbers of heads is written with every kept group padded to the largest
count with zero heads (exact, but those heads' q_proj/o_proj weights and compute come back).
The KV cache kept is the fraction of KV heads still present. `--as-cut` adds each row without the
re-solve (the OBS choice, the dense o_proj columns). Held-out windows and calibration are those of
bench/reconstruction.py.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


@dataclass(frozen=True)
class Cut:
    """One row: how each layer's attention is cut."""

    name: str
    unit: str  # "group", "head" or "head/group"
    amount: int  # groups per layer, heads per layer, or heads per group


@dataclass
class LayerCut:
    """The kept query heads of one layer's o_proj (ascending) and its new weight over them."""

    heads: list[int]
    weight: Tensor


def _columns(heads: list[int], head_dim: int) -> Tensor:
    return torch.tensor([h * head_dim + i for h in heads for i in range(head_dim)], dtype=torch.long)


def _obs_start(gram: Tensor, dense: Tensor) -> tuple[Tensor, Tensor]:
    from gisp.reconstruction import ridge_solve

    eye = torch.eye(gram.shape[0], dtype=torch.float64)
    return dense.detach().to(torch.float64).clone(), ridge_solve(gram, eye, 0.01, what="query-head OBS")


def _free_heads(gram: Tensor, dense: Tensor, spec, budget: int) -> list[int]:
    """Greedy grouped-OBS removal of single query heads, one per round with the weights updated,
    until `budget` weight units (head_dim × hidden) are gone: a head is 2 units (q rows, o
    columns); a group whose last head goes also frees its k/v rows, 2 more."""
    from gisp.tyr.local import _remove, _scores  # the local pruner's own OBS steps, reused as they are

    hd, per = spec.head_dim, spec.heads_per_group
    weight, hinv = _obs_start(gram, dense)
    kept, removed = list(range(per * spec.num_kv_heads)), 0
    while removed < budget and kept:
        scores = _scores(weight, hinv, kept, hd)
        best = min(range(len(kept)), key=lambda i: (float(scores[i]), kept[i]))
        head = kept.pop(best)
        weight, hinv = _remove(weight, hinv, _columns([head], hd))
        removed += 2 + (2 if not any(h // per == head // per for h in kept) else 0)
    return kept


def _equal_per_group(gram: Tensor, dense: Tensor, spec, take: int) -> list[int]:
    """Greedy grouped-OBS removal of `take` heads from every group, one head per group per round."""
    from gisp.tyr.local import _remove, _scores

    hd, per = spec.head_dim, spec.heads_per_group
    weight, hinv = _obs_start(gram, dense)
    kept = list(range(per * spec.num_kv_heads))
    for _ in range(take):
        scores = _scores(weight, hinv, kept, hd)
        gone = []
        for group in range(spec.num_kv_heads):
            members = [i for i, h in enumerate(kept) if h // per == group]
            gone.append(kept[min(members, key=lambda i: (float(scores[i]), kept[i]))])
        weight, hinv = _remove(weight, hinv, _columns(sorted(gone), hd))
        kept = [h for h in kept if h not in set(gone)]
    return kept


def _solve(gram: Tensor, dense: Tensor, heads: list[int], head_dim: int, damp: float) -> Tensor:
    """The kept columns re-solved to reproduce the dense o_proj on the same inputs (T'yr's re-solve)."""
    from gisp.reconstruction import ridge_solve

    cols = _columns(heads, head_dim)
    cross = gram @ dense.detach().to(torch.float64).T
    return ridge_solve(gram[cols][:, cols], cross[cols], damp, what="query-head re-solve").T.float().contiguous()


def choose(cut: Cut, gram: Tensor, dense: Tensor, spec, damp: float, rounds: int, refit: bool) -> LayerCut:
    """The kept heads of one layer under `cut`, and o_proj's weight over them."""
    from gisp.tyr.local import ladder

    hd, per, groups = spec.head_dim, spec.heads_per_group, spec.num_kv_heads
    gram = gram.to(torch.float64)
    if cut.unit == "group":
        rung = ladder(gram, dense, per * hd, [groups - cut.amount], damp, rounds, "kv-group")
        heads = sorted(g * per + i for g in rung[groups - cut.amount].kept for i in range(per))
    elif cut.unit == "head":  # amount: KV groups' worth of weights
        heads = _free_heads(gram, dense, spec, cut.amount * (2 * per + 2))
    else:
        heads = _equal_per_group(gram, dense, spec, cut.amount)
    if refit:
        weight = _solve(gram, dense, heads, hd, damp)
    else:
        weight = dense.detach().float()[:, _columns(heads, hd)].contiguous()
    return LayerCut(heads, weight)


def sizes(cuts: list[LayerCut], spec) -> dict[str, float]:
    """Attention weights removed as pruned and as exported (fractions of the dense attention), and
    the fraction of KV heads kept."""
    per, groups = spec.heads_per_group, spec.num_kv_heads
    unit = 1  # head_dim × hidden weights; a query head owns 2 (q rows, o columns), a KV head 2 (k, v)
    dense = groups * (2 * per + 2) * unit
    pruned = exported = kv = 0.0
    for layer in cuts:
        counts = [sum(1 for h in layer.heads if h // per == g) for g in range(groups)]
        kept_groups = [c for c in counts if c]
        pruned += sum(2 * c + 2 for c in kept_groups) * unit
        exported += len(kept_groups) * (2 * max(kept_groups, default=0) + 2) * unit
        kv += len(kept_groups) / groups
    n = len(cuts)
    return {
        "removed_pruned": 1 - pruned / (dense * n),
        "removed_exported": 1 - exported / (dense * n),
        "kv_kept": kv / n,
    }


@torch.no_grad()
def prune_attention(loaded, batches: list, cut: Cut, damp: float, rounds: int, refit: bool) -> tuple[list, list]:
    """Cut every layer's attention in order, streaming the calibration hidden states layer by
    layer (errors propagated: layer l's Gram matrix is taken on the outputs of the cut layers < l).
    Returns the swaps to undo and the per-layer cuts; the model runs with each o_proj replaced by
    one reading only the kept heads, so a removed head or group contributes nothing."""
    from gisp.reconstruction import GramAccumulator
    from gisp.reconstruction.stream import _run_layer, catch_inputs
    from gisp.tyr.supernet import LevelProjection, _parent

    adapter, model, spec = loaded.adapter, loaded.model, loaded.adapter.spec
    hidden, calls = catch_inputs(model, adapter, batches)
    swaps, cuts = [], []
    for layer, layer_calls in zip(adapter.layers(model), calls, strict=True):
        original = adapter.unit_output_module(layer, "attn")
        acc = GramAccumulator(original.in_features)

        def tap(x: Tensor, _y: Tensor, index: int, acc=acc, layer_calls=layer_calls) -> None:
            acc.add(x[layer_calls[index].tokens])

        _run_layer(layer, hidden, layer_calls, {original: tap})
        assert acc.gram is not None
        chosen = choose(cut, acc.gram, original.weight, spec, damp, rounds, refit)
        columns = _columns(chosen.heads, spec.head_dim)
        replacement = LevelProjection(columns, chosen.weight.to(original.weight.dtype), original.bias)
        parent, attr = _parent(layer, original)
        setattr(parent, attr, replacement)
        swaps.append((parent, attr, original))
        cuts.append(chosen)
        hidden = _run_layer(layer, hidden, layer_calls)
    return swaps, cuts


def cuts_for(spec, group_amounts: list[int]) -> list[Cut]:
    """For each r KV groups per layer: the group cut, the free head cut of the same weight count,
    and every exact equal-per-group head cut."""
    per = spec.heads_per_group
    rows = []
    for r in group_amounts:
        rows.append(Cut(f"kv-group {r}/layer", "group", r))
        rows.append(Cut(f"query-heads, {r} group(s)' weights/layer", "head", r))
    for k in range(1, per):
        rows.append(Cut(f"query-head {k}/group", "head/group", k))
    return rows


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=common.STORIES, help="model folder or .gguf")
    parser.add_argument("--groups", default="1,2", help="KV groups removed per layer, comma-separated")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--eval-windows", type=int, default=16)
    parser.add_argument("--sets", default="tinystories,wikitext2,c4")
    parser.add_argument("--damp", type=float, default=0.01, help="ridge damping (tyr_damp's default)")
    parser.add_argument("--rounds", type=int, default=16, help="greedy removal rounds (tyr_update_rounds)")
    parser.add_argument("--as-cut", action="store_true", help="also each row without the re-solve")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    common.setup(args)
    common.require_assets(common.TINYSTORIES, common.WIKITEXT, common.C4)

    import gisp
    from gisp.objectives import get_objective
    from gisp.objectives.base import pad_token_id

    split = common.split_tinystories(Path(tempfile.mkdtemp(prefix="gisp-bench-qheads-")))
    settings = gisp.PruneSettings(
        targets=[0.5], samples=args.samples, seq_len=args.seq_len, heldout=0, seed=args.seed, reconstruct="none"
    )
    prepared = gisp.prepare(str(args.model), split.calibration, settings)
    loaded = prepared.loaded
    spec = loaded.adapter.spec
    pad = pad_token_id(loaded.tokenizer)
    batches = get_objective(settings.objective).batches(prepared.calibration, settings.batch_size, pad)
    sets = common.eval_sets(loaded.tokenizer, split.evaluation, args.seq_len, args.eval_windows, args.sets.split(","))
    dense = common.perplexities(loaded.model, sets, pad_id=pad)
    print("dense", {k: round(v, 2) for k, v in dense.items()}, flush=True)

    rows, records = [], []
    refits = [True, False] if args.as_cut else [True]
    for cut in cuts_for(spec, [int(g) for g in args.groups.split(",")]):
        for refit in refits:
            started = time.perf_counter()
            swaps, cuts = prune_attention(loaded, batches, cut, args.damp, args.rounds, refit)
            seconds = time.perf_counter() - started
            try:
                ppl = common.perplexities(loaded.model, sets, pad_id=pad)
            finally:
                for parent, attr, original in reversed(swaps):
                    setattr(parent, attr, original)
            size = sizes(cuts, spec)
            name = cut.name + ("" if refit else ", as cut")
            print(name, {k: round(v, 2) for k, v in ppl.items()}, {k: round(v, 3) for k, v in size.items()}, flush=True)
            records.append(
                {
                    "row": name,
                    "refit": refit,
                    **size,
                    "perplexity": ppl,
                    "seconds": seconds,
                    "heads": [c.heads for c in cuts],
                }
            )
            rows.append(
                [
                    name,
                    f"{size['removed_pruned']:.3f}",
                    f"{size['removed_exported']:.3f}",
                    f"{size['kv_kept']:.3f}",
                    *(f"{ppl[s]:.2f} ({ppl[s] / dense[s]:.2f}×)" for s in sets),
                ]
            )
    per, groups = spec.heads_per_group, spec.num_kv_heads
    lines = [
        common.run_header(f"Attention unit: KV group vs query head, {args.model.name}", args),
        f"{spec.num_layers} layers, {groups} KV groups × {per} query heads, head_dim {spec.head_dim}; "
        f"MLP dense; calibration {args.samples} × {args.seq_len} TinyStories tokens; damp {args.damp}, "
        f"{args.rounds} removal rounds. Dense: " + ", ".join(f"{s} {dense[s]:.2f}" for s in sets) + "\n",
        common.markdown_table(
            ["attention cut (every layer)", "removed as pruned", "removed as exported", "KV cache kept", *sets], rows
        )
        + "\n",
    ]
    common.emit("\n".join(lines), args)
    common.write_json(
        {
            "dense": dense,
            "rows": records,
            "spec": {"layers": spec.num_layers, "groups": groups, "heads_per_group": per, "head_dim": spec.head_dim},
        },
        args,
    )


if __name__ == "__main__":
    main()
