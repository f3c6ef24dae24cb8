"""Why wanda-sp collapses on SmolLM2-135M at 0.2: its cut taken apart (attention vs MLP), and its
choice of KV group set against fixed choices in the same layers.

SmolLM2-135M has 3 KV groups per layer (9 query heads), so wanda-sp's uniform cut removes a whole
group, a third of a layer's attention, from almost every layer at 0.2. This script measures, on
the held-out windows of bench/reconstruction.py, the 0.2 checkpoint as cut, its MLP cut alone, its
attention cut alone, and the same layers losing group 0, 1 or 2 instead of the one wanda-sp picks.
All are masks on the dense model (no reconstruction).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder or .gguf")
    parser.add_argument("--target", type=float, default=0.2)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--eval-windows", type=int, default=16)
    parser.add_argument("--sets", default="tinystories,wikitext2")
    args = parser.parse_args()
    common.setup(args)
    common.require_assets(common.TINYSTORIES, common.WIKITEXT, common.C4)

    import gisp
    from gisp.masking import structure_masks, unit_masks
    from gisp.structure import Structure

    split = common.split_tinystories(Path(tempfile.mkdtemp(prefix="gisp-bench-wandakv-")))
    dense = gisp.load_model(str(args.model))
    sets = common.eval_sets(dense.tokenizer, split.evaluation, args.seq_len, args.eval_windows, args.sets.split(","))
    settings = gisp.PruneSettings(
        targets=[args.target],
        method="wanda-sp",
        samples=args.samples,
        seq_len=args.seq_len,
        heldout=0,
        reconstruct="none",
    )
    trajectory, _ = gisp.run(str(args.model), split.calibration, settings)
    cut = trajectory.checkpoints[0].structure
    full = Structure.full(dense.adapter.spec)
    groups = dense.adapter.spec.num_kv_heads
    hit = [i for i, kept in enumerate(cut.attn) if len(kept) < groups]
    removed = {i: sorted(set(range(groups)) - set(cut.attn[i])) for i in hit}
    variants = {
        "dense": full,
        f"wanda-sp {args.target:g} as cut": cut,
        "its MLP cut only": Structure(attn=full.attn, mlp=cut.mlp),
        "its attention cut only": Structure(attn=cut.attn, mlp=full.mlp),
    }
    for g in range(groups):
        attn = [[j for j in range(groups) if not (i in removed and j == g)] for i in range(len(full.attn))]
        variants[f"attention only, group {g} removed in the same layers"] = Structure(attn=attn, mlp=full.mlp)
    lines = [
        common.run_header(f"wanda-sp at {args.target:g} taken apart, {args.model.name}", args),
        f"Layers losing a KV group: {len(hit)} of {len(full.attn)} ({hit[0]}–{hit[-1]}); the group wanda-sp "
        "removes per layer: " + ", ".join(f"{i}:{removed[i][0]}" for i in hit) + "\n",
    ]
    table = []
    base = None
    for name, structure in variants.items():
        masks = structure_masks(dense.adapter, full, structure)
        with unit_masks(dense.model, dense.adapter, masks):
            ppl = common.perplexities(dense.model, sets)
        base = base or ppl
        table.append([name, *(f"{ppl[s]:.2f} ({ppl[s] / base[s]:.1f}×)" for s in sets)])
        print(name, {k: round(v, 2) for k, v in ppl.items()}, flush=True)
    lines.append(common.markdown_table(["structure (masks on the dense model)", *sets], table) + "\n")
    common.emit("\n".join(lines), args)


if __name__ == "__main__":
    main()
