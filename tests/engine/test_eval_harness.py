"""Evaluation harness: multiple-choice readers on the real sets, the scorer against a slow
reference, the next-sentence builder, size/FLOPs, throughput and `gisp eval`."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from gisp.cli import main
from gisp.data import ChoiceRecord, read_records
from gisp.data.next_sentence import build_items, write_items
from gisp.errors import DataFormatError
from gisp.eval import choice_scores, measure_throughput, model_size, read_mc
from gisp.eval.readers import detect_mc_format
from gisp.structure import Structure
from tests.conftest import shared_path
from tests.engine.tiny import tiny_model

# (path under shared/, format, items, choice counts seen)
MC_SETS = [
    (("data", "mc", "arc", "ARC-Easy-test.jsonl"), "arc", 2376, {3, 4, 5}),
    (("data", "mc", "arc", "ARC-Easy-validation.jsonl"), "arc", 570, {3, 4, 5}),
    (("data", "mc", "arc", "ARC-Challenge-test.jsonl"), "arc", 1172, {3, 4, 5}),
    (("data", "mc", "hellaswag", "hellaswag_val_full.txt.bz2"), "hellaswag", 10042, {4}),
    (("data", "mc", "copa", "copa-dev.xml"), "copa", 500, {2}),
    (("data", "mc", "copa", "copa-test.xml"), "copa", 500, {2}),
]


@pytest.mark.integration
@pytest.mark.parametrize(("parts", "fmt", "count", "sizes"), MC_SETS, ids=[s[0][-1] for s in MC_SETS])
def test_mc_readers_parse_the_real_sets(parts, fmt, count, sizes) -> None:
    path = shared_path(*parts)
    assert detect_mc_format(path) == fmt
    items = read_mc(path, fmt)
    assert len(items) == count
    assert all(0 <= item.answer < len(item.choices) for item in items)
    assert {len(item.choices) for item in items} <= sizes
    assert all(item.context and all(c for c in item.choices) for item in items)


@pytest.mark.integration
def test_mc_readers_follow_the_prompt_conventions() -> None:
    hellaswag = read_mc(shared_path("data", "mc", "hellaswag", "hellaswag_val_full.txt.bz2"), limit=1)[0]
    assert hellaswag.context == "Roof shingle removal: A man is sitting on a roof. he" and hellaswag.answer == 3
    copa = read_mc(shared_path("data", "mc", "copa", "copa-dev.xml"))[0]
    assert copa == ChoiceRecord(
        "My body cast a shadow over the grass because", ("the sun was rising.", "the grass was cut."), 0
    )
    arc = read_mc(shared_path("data", "mc", "arc", "ARC-Easy-test.jsonl"))
    assert arc[0].context.startswith("Question: ") and arc[0].context.endswith("\nAnswer:")
    effects = [
        i for i in read_mc(shared_path("data", "mc", "copa", "copa-dev.xml")) if i.context.endswith(" therefore")
    ]
    assert 200 < len(effects) < 300


def test_jsonl_reader_and_errors(tmp_path) -> None:
    good = tmp_path / "mc.jsonl"
    rows = [
        {"question": "Q?", "choices": ["a", "b", "c"], "answer": 2},
        {"context": "C", "choices": ["x", "y"], "answer": 0},
    ]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_mc_format(good) == "jsonl"
    assert read_mc(good) == [ChoiceRecord("Q?", ("a", "b", "c"), 2), ChoiceRecord("C", ("x", "y"), 0)]
    text = tmp_path / "text.jsonl"
    text.write_text('{"text": "no choices here"}\n')
    with pytest.raises(DataFormatError) as err:
        read_mc(text, "jsonl")
    assert err.value.field == "choices"
    broken = tmp_path / "broken.txt"
    broken.write_text("ctx\n0\na\nb\n")
    with pytest.raises(DataFormatError, match="multiple of 6"):
        read_mc(broken, "hellaswag")
    with pytest.raises(DataFormatError) as err:
        read_mc(good, "nope")
    assert err.value.field == "mc_format"


def slow_choice_nll(model, tokenizer, context: str, choice: str) -> tuple[float, int]:
    """Summed NLL of the choice tokens given the context, computed on one unpadded sequence."""
    bos = [tokenizer.bos_token_id]
    prompt = bos + tokenizer(context, add_special_tokens=False)["input_ids"]
    full = bos + tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
    assert full[: len(prompt)] == prompt
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
    nll = -sum(float(logp[i - 1, full[i]]) for i in range(len(prompt), len(full)))
    return nll, len(full) - len(prompt)


def test_choice_scores_match_a_slow_reference() -> None:
    loaded = tiny_model("llama-gqa")
    rng = torch.Generator().manual_seed(0)

    def words(n: int) -> str:
        return " ".join(f"w{int(i)}" for i in torch.randint(4, 64, (n,), generator=rng))

    items = [
        ChoiceRecord(words(int(torch.randint(2, 8, (1,), generator=rng))), tuple(words(k) for k in (1, 3, 2, 5)), a)
        for a in (0, 1, 2, 3, 1, 2, 0, 3)
    ]
    expected = torch.zeros(3)
    for item in items:
        scored = [slow_choice_nll(loaded.model, loaded.tokenizer, item.context, c) for c in item.choices]
        rules = [
            [nll / n for nll, n in scored],
            [nll for nll, _ in scored],
            [nll / (len(c) + 1) for (nll, _), c in zip(scored, item.choices, strict=True)],
        ]
        expected += torch.tensor([float(min(range(4), key=r.__getitem__) == item.answer) for r in rules])
    result = choice_scores(loaded.model, loaded.tokenizer, items, batch_size=3)
    assert result.items == len(items)
    assert [result.accuracy, result.accuracy_sum, result.accuracy_chars] == pytest.approx((expected / 8).tolist())


def test_next_sentence_builder_is_deterministic_and_valid(tmp_path) -> None:
    text = "\n\n".join(
        f"Story {p} begins. Tom saw thing {p} today. He liked thing {p} a lot. Then he went home with {p}. The end."
        for p in range(40)
    )
    first = build_items(text, 10, seed=3)
    assert first == build_items(text, 10, seed=3)
    assert first != build_items(text, 10, seed=4)
    for item in first:
        truth = item["choices"][item["answer"]]
        story = re.search(r"Story (\d+)", item["context"]).group(1)
        assert truth == f"Then he went home with {story}."
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        others = [c for i, c in enumerate(item["choices"]) if i != item["answer"]]
        assert all(f" {story} " not in f" {c[:-1]} " for c in others)  # distractors come from other stories
    early = {i["context"] for i in build_items(text, 100, part=(0.0, 0.5))}
    late = {i["context"] for i in build_items(text, 100, part=(0.5, 1.0))}
    assert len(early) == len(late) == 20 and not early & late
    path = write_items(tmp_path / "ns.jsonl", first)
    kind, records = read_records(path)
    assert kind == "choice" and len(records) == 10 and read_mc(path) == records


@pytest.mark.integration
def test_stories_model_beats_chance_on_next_sentence(stories_model, stories_text, tmp_path) -> None:
    """The real model picks true continuations well above 1/4; the set also works as margin data."""
    from gisp.loading import load_model

    items = build_items(stories_text.read_text(), 120, seed=0, part=(0.5, 1.0))
    loaded = load_model(str(stories_model))
    records = read_mc(write_items(tmp_path / "ns.jsonl", items))
    result = choice_scores(loaded.model, loaded.tokenizer, records)
    assert result.accuracy > 0.35, result  # chance is 0.25 (± 0.04 over 120 items); it scores ≈ 0.45


def test_size_and_flops_follow_the_actual_widths() -> None:
    loaded = tiny_model("llama-gqa")
    spec = loaded.adapter.spec
    full = model_size(loaded.model)
    assert full.parameters == sum(p.numel() for p in loaded.model.parameters())
    assert full.parameter_bytes == 4 * full.parameters
    assert full.flops_per_token == Structure.full(spec).flops_per_token(spec)
    kept = Structure(attn=[[0], [], [0, 1]], mlp=[list(range(10)), list(range(24)), [3]])
    loaded.adapter.slice_model(loaded.model, Structure.full(spec), kept)
    sliced = model_size(loaded.model)
    assert sliced.flops_per_token == kept.flops_per_token(spec)
    assert sliced.flops_per_token_ctx512 == kept.flops_per_token(spec, context=512)
    assert sliced.parameters == kept.total_params(spec)
    assert (sliced.kv_groups_per_layer, sliced.channels_per_layer) == ([1, 0, 2], [10, 24, 1])


def test_throughput_measures_prefill_and_cached_decode() -> None:
    loaded = tiny_model("llama-gqa")
    layer = loaded.adapter.layers(loaded.model)[1]
    spec = loaded.adapter.spec
    loaded.adapter.slice_model(  # an empty attention layer must still keep the cache consistent
        loaded.model, Structure.full(spec), Structure(attn=[[0, 1], [], [1]], mlp=[list(range(24))] * 3)
    )
    assert layer is loaded.adapter.layers(loaded.model)[1]
    result = measure_throughput(loaded.model, prompt_tokens=16, decode_tokens=8, repeats=2)
    assert math.isfinite(result.prefill_tokens_per_s) and result.prefill_tokens_per_s > 0
    assert math.isfinite(result.decode_tokens_per_s) and result.decode_tokens_per_s > 0
    assert (result.prompt_tokens, result.decode_tokens, result.batch_size) == (16, 8, 1)
    assert not loaded.model.training


@pytest.mark.integration
def test_gisp_eval_cli_reports_everything(stories_model, stories_text, capsys) -> None:
    copa = shared_path("data", "mc", "copa", "copa-dev.xml")
    argv = [
        "eval", str(stories_model), "--data", str(stories_text), "--seq-len", "128,512", "--max-windows", "8",
        "--mc", str(copa), "--mc-limit", "40", "--throughput", "--prompt-tokens", "32", "--decode-tokens", "8",
        "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    by_len = summary["perplexity_by_seq_len"]
    assert set(by_len) == {"128", "512"} and summary["seq_len"] == 128
    assert all(3 < by_len[n]["perplexity"] < 15 for n in by_len)  # stories260K: ≈ 5-8 on its own val text
    assert by_len["128"]["tokens"] == 8 * 127 and by_len["512"]["tokens"] == 8 * 511
    assert summary["parameters"] == 260_032 and summary["bytes"] > 1_000_000
    mc = summary["mc"][str(copa)]
    assert mc["format"] == "copa" and mc["items"] == 40 and 0 <= mc["accuracy"] <= 1
    assert summary["throughput"]["decode_tokens_per_s"] > 0
    assert summary["flops_per_token"] > 2 * 260_032 - 2 * 512 * 64 * 2  # ~2 FLOPs per weight used


def test_gisp_eval_cli_rejects_bad_input(tmp_path, capsys) -> None:
    assert main(["eval", str(tmp_path), "--json"]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    # a missing file is a runtime failure (1); usage errors are 2
    assert main(["eval", str(tmp_path), "--mc", str(tmp_path / "missing.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err
