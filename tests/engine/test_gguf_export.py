"""GGUF export, checked by running the file in real llama.cpp (llama-cpp-python, the `llamacpp`
extra): logits equal the transformers checkpoint's for pruned layouts that need each of the deci
workarounds, for every family, dense and tied; token ids equal transformers'; the file's metadata
and zero-weight units are as documented. Tests that need llama.cpp skip with a message without it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from gisp.cli import main
from gisp.config import PruneSettings
from gisp.eval import llamacpp
from gisp.export import export_checkpoint
from gisp.exporters import ExportError, export
from gisp.pruner import new_trajectory, prune
from gisp.structure import Structure
from tests.engine.tiny import random_examples, real_tokenizer, tiny_lm, tiny_model

gguf = pytest.importorskip("gguf", reason="pip install 'gisp-service[gguf]'")
pytestmark = pytest.mark.integration
needs_llamacpp = pytest.mark.skipif(
    not llamacpp.available(),
    reason="llama.cpp is not installed: pip install 'gisp-service[llamacpp]' (CI: .ci/llamacpp_wheel.sh)",
)

PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "The dog ran to the park and saw a big red ball. He was very happy.",
    'Tom said, "I want to play with you!" and they laughed.',
]

# case -> (layer, attention kept, MLP kept) edits of a pruned structure; None keeps the layer as pruned
CASES: dict[str, list[tuple[int, bool, bool]]] = {
    "dense": [],
    "no-kv-group": [(1, False, True)],
    "no-mlp-channel": [(1, True, False)],
    "both-in-one-layer": [(2, False, False)],
    "layer0-empty": [(0, False, False)],
    "last-layer-identity": [(-1, False, False)],
}


def pruned_checkpoint(
    out: Path, family: str = "llama-gqa", case: str = "no-kv-group", tokenizer: str = "spm", **overrides
) -> Path:
    """Prune a tiny model for real, edit its checkpoint's structure for `case`, export the folder."""
    tok = real_tokenizer(tokenizer)
    base = tiny_lm(family, tok, **overrides)
    settings = PruneSettings(targets=[0.4], steps=2, batch_size=4)
    trajectory = prune(base, random_examples(8, 16), settings, new_trajectory(base, settings, "0" * 64))
    record = trajectory.checkpoints[0]
    full = Structure.full(base.adapter.spec)
    if case == "dense":
        record.structure = copy.deepcopy(full)
    for layer, keep_attn, keep_mlp in CASES[case]:
        if not keep_attn:
            record.structure.attn[layer] = []
        elif not record.structure.attn[layer]:
            record.structure.attn[layer] = list(full.attn[layer][:1])
        if not keep_mlp:
            record.structure.mlp[layer] = []
        elif not record.structure.mlp[layer]:
            record.structure.mlp[layer] = list(full.mlp[layer][:5])
    return export_checkpoint(trajectory, 0.4, out, base=tiny_lm(family, tok, **overrides))


def compare(gguf_file: Path, folder: Path, prompts=PROMPTS, **llama) -> tuple[float, float]:
    """(max |logit difference|, top-1 agreement) of llama.cpp vs transformers over `prompts`; also
    asserts that llama.cpp tokenizes every prompt as transformers does."""
    result = llamacpp.agreement(gguf_file, folder, prompts, n_ctx=128, **llama)
    assert not result.tokenized_differently
    return result.max_abs_diff, result.top1


def read(path: Path):
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}
    return fields, tensors


# ------------------------------------------------------------------ the file itself (no llama.cpp needed)


def test_the_file_has_per_layer_sizes_explicit_head_size_and_zero_units(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="layer0-empty")
    summary = export(folder, tmp_path / "m.gguf", "gguf", dtype="f32", align=1)
    fields, tensors = read(tmp_path / "m.gguf")
    assert fields["general.architecture"] == "deci"
    kv = fields["deci.attention.head_count_kv"]
    assert kv[0] == 1 and fields["deci.attention.head_count"][0] == 2  # layer 0: one zero group (2 q heads)
    assert fields["deci.feed_forward_length"][0] == 1  # and one zero channel
    assert (fields["deci.attention.key_length"], fields["deci.rope.dimension_count"]) == (8, 8)
    assert np.all(tensors["blk.0.attn_q.weight"].data == 0) and np.all(tensors["blk.0.attn_output.weight"].data == 0)
    assert np.all(tensors["blk.0.ffn_down.weight"].data == 0)
    assert summary["zero_groups"] == 1 and summary["zero_channels"] == 1
    assert summary["added_kv_values_per_token"] == 16
    assert "output.weight" in tensors  # untied head


def test_a_tied_head_writes_no_output_tensor_and_the_sentencepiece_vocab(stories_model: Path, tmp_path: Path) -> None:
    export(stories_model, tmp_path / "s.gguf", "gguf", dtype="f16")
    fields, tensors = read(tmp_path / "s.gguf")
    assert "output.weight" not in tensors
    assert fields["tokenizer.ggml.model"] == "llama" and len(fields["tokenizer.ggml.tokens"]) == 512
    assert fields["tokenizer.ggml.bos_token_id"] == 1 and fields["tokenizer.ggml.add_bos_token"] is True
    assert tensors["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_widths_are_rounded_to_whole_blocks_with_zero_channels_and_q8_0_falls_back_otherwise(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="no-kv-group")
    kept = json.loads((folder / "config.json").read_text())["layer_intermediate_sizes"]
    assert any(width % 32 for width in kept)  # the pruning left widths that are not whole blocks
    export(folder, tmp_path / "a.gguf", "gguf", dtype="q8_0")  # align=32 by default
    fields, tensors = read(tmp_path / "a.gguf")
    assert list(fields["deci.feed_forward_length"]) == [-(-max(w, 1) // 32) * 32 for w in kept]
    for i, width in enumerate(kept):
        assert tensors[f"blk.{i}.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
        up = gguf.quants.dequantize(tensors[f"blk.{i}.ffn_up.weight"].data, gguf.GGMLQuantizationType.Q8_0)
        assert np.all(up[width:] == 0) and np.any(up[:width] != 0)  # the appended channels are zero
    export(folder, tmp_path / "q.gguf", "gguf", dtype="q8_0", align=1)
    fields, tensors = read(tmp_path / "q.gguf")
    assert list(fields["deci.feed_forward_length"]) == [max(w, 1) for w in kept]
    for i, width in enumerate(kept):  # rows of `width` values: F16 unless they split into 32-value blocks
        want = gguf.GGMLQuantizationType.Q8_0 if width % 32 == 0 else gguf.GGMLQuantizationType.F16
        assert tensors[f"blk.{i}.ffn_down.weight"].tensor_type == want


def test_unsupported_inputs_are_refused_with_the_reason(tmp_path: Path) -> None:
    word_level = tiny_model("llama-gqa")
    word_level.model.save_pretrained(tmp_path / "w")
    word_level.tokenizer.save_pretrained(tmp_path / "w")
    with pytest.raises(ExportError, match="WordLevel tokenizer"):
        export(tmp_path / "w", tmp_path / "w.gguf", "gguf")
    with pytest.raises(ExportError, match="dtype must be one of"):
        export(tmp_path / "w", tmp_path / "w.gguf", "gguf", dtype="q4_k")
    with pytest.raises(ExportError, match="neither a checkpoint folder nor a trajectory"):
        export(tmp_path, tmp_path / "x.gguf", "gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*.tmp"))  # nothing half-written


# ------------------------------------------------------------------ running it in llama.cpp


@needs_llamacpp
@pytest.mark.parametrize("align", [1, 32])
@pytest.mark.parametrize("case", list(CASES))
def test_llamacpp_logits_equal_transformers_for_every_pruned_layout(case: str, align: int, tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case=case)
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32", align=align)
    worst, top1 = compare(tmp_path / "m.gguf", folder, exact=True)
    assert top1 == 1.0 and worst < 1e-4, (worst, top1)


@needs_llamacpp
@pytest.mark.parametrize("family", ["llama-mha", "llama-bias", "qwen2", "mistral"])
@pytest.mark.parametrize("case", ["both-in-one-layer", "layer0-empty"])
def test_llamacpp_runs_every_family(family: str, case: str, tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", family=family, case=case)
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32")
    worst, top1 = compare(tmp_path / "m.gguf", folder, exact=True)
    assert top1 == 1.0 and worst < 1e-4, (worst, top1)


@needs_llamacpp
def test_a_tied_model_and_flash_attention(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="no-kv-group", tie_word_embeddings=True)
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32")
    _, tensors = read(tmp_path / "m.gguf")
    assert "output.weight" not in tensors
    worst, top1 = compare(tmp_path / "m.gguf", folder, exact=True)
    assert top1 == 1.0 and worst < 1e-4, (worst, top1)
    worst, top1 = compare(tmp_path / "m.gguf", folder, flash_attn=True)  # f16 K/V in llama.cpp's CPU kernel
    assert top1 == 1.0 and worst < 5e-2, (worst, top1)


# ------------------------------------------------------------------ real weights, through the CLI

# dtype -> (max |logit difference| vs the float32 transformers checkpoint, least top-1 agreement), on
# stories260K (logits of magnitude ~20); measured figures are in docs/benchmarks.md.
TOLERANCES = {"f32": (1e-4, 1.0), "f16": (0.1, 0.98), "bf16": (0.5, 0.95), "q8_0": (1.5, 0.9)}


@pytest.fixture(scope="module")
def stories_pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import shared_path

    out = tmp_path_factory.mktemp("stories")
    code = main(
        [
            "prune", str(shared_path("models", "stories260K")),
            "--data", str(shared_path("data", "tinystories", "tinystories_val.txt")),
            "--out", str(out), "--targets", "0.5", "--steps", "2", "--samples", "8", "--seq-len", "64",
        ]
    )  # fmt: skip
    assert code == 0
    return out


@needs_llamacpp
@pytest.mark.parametrize("dtype", list(TOLERANCES))
def test_a_real_pruned_checkpoint_runs_in_llamacpp_within_its_dtype_tolerance(
    stories_pruned: Path, dtype: str, tmp_path: Path
) -> None:
    folder = stories_pruned / "sparsity-0.50"
    assert main(["export-gguf", str(folder), "--out", str(tmp_path / "m.gguf"), "--dtype", dtype]) == 0
    worst, top1 = compare(tmp_path / "m.gguf", folder, exact=dtype == "f32")
    most, least = TOLERANCES[dtype]
    assert worst <= most and top1 >= least, (worst, top1)


def test_export_from_a_trajectory_needs_a_target_it_has(stories_pruned: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.gguf"
    assert main(["export-gguf", str(stories_pruned), "--out", str(out)]) == 1
    assert "name the checkpoint with --target" in capsys.readouterr().err
    assert main(["export-gguf", str(stories_pruned), "--out", str(out), "--target", "0.3"]) == 1
    assert "no checkpoint for target 0.3" in capsys.readouterr().err
    assert main(["export-gguf", str(stories_pruned / "trajectory.json"), "--out", str(out), "--target", "0.5"]) == 0
    fields, _ = read(out)
    assert fields["gisp.target_sparsity"] == pytest.approx(0.5)


@needs_llamacpp
@pytest.mark.parametrize("variant", ["bias", "lstsq-select"])
def test_a_reconstructed_checkpoint_carries_its_refit_weights_into_llamacpp(variant: str, tmp_path: Path) -> None:
    from gisp.reconstruction.stage import reconstruct_checkpoints

    tok = real_tokenizer("spm")
    base = tiny_lm("llama-gqa", tok)
    settings = PruneSettings(targets=[0.4], steps=2, batch_size=4, reconstruct=variant)
    examples = random_examples(8, 16)
    trajectory = prune(base, examples, settings, new_trajectory(base, settings, "0" * 64), register=False)
    reconstruct_checkpoints(tiny_lm("llama-gqa", tok), examples, settings, trajectory, tensors_dir=tmp_path)
    folder = export_checkpoint(
        trajectory,
        0.4,
        tmp_path / "ckpt",
        base=tiny_lm("llama-gqa", tok),
        tensors=tmp_path / "reconstruction" / "sparsity-0.40.safetensors",
    )
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32")
    _, tensors = read(tmp_path / "m.gguf")
    assert ("blk.1.attn_output.bias" in tensors) == (variant == "bias")  # the FLAP bias travels too
    worst, top1 = compare(tmp_path / "m.gguf", folder, exact=True)
    assert top1 == 1.0 and worst < 1e-4, (worst, top1)
