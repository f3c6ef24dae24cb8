"""The benchmarks' mixed-domain calibration file: equal windows per source, every window taken by
the engine's draw, and no text that a held-out window is made of."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import REPO, shared_path

sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402

from gisp.data import build_examples, read_records  # noqa: E402
from gisp.loading import load_model  # noqa: E402


def test_mixed_calibration_is_balanced_whole_windows_and_disjoint_from_heldout(tmp_path: Path) -> None:
    tokenizer = load_model(str(shared_path("models", "stories260K"))).tokenizer
    shared_path("data", "wikitext-2-raw", "wiki.valid.raw")
    split = common.split_tinystories(tmp_path, 0.25)
    skip = len(read_records(common.C4)[1]) // 2
    assert common.heldout_records(tokenizer, common.C4, 128, 32) <= skip
    path, counts = common.mixed_calibration(tokenizer, tmp_path, split, 32, 128, 0, skip)
    assert counts == {"tinystories": 11, "wikitext2": 11, "c4": 10}
    _, records = read_records(path)
    calibration, _ = build_examples(tokenizer, records, "lm", samples=32, seq_len=128, seed=0)
    assert len(calibration) == 32  # every window drawn; each one is exactly one record (BOS + 127 tokens)
    assert sorted(tuple(e.input_ids) for e in calibration) == sorted(
        tuple(common.text_windows(tokenizer, path, 128, 32)[i].input_ids) for i in range(32)
    )
    assert all(e.input_ids[0] == tokenizer.bos_token_id for e in calibration)
    texts = [r.text for r in records]
    heldout_c4 = read_records(common.C4)[1][: common.heldout_records(tokenizer, common.C4, 128, 32)]
    evaluation = split.evaluation.read_text(encoding="utf-8")
    wiki_test = common.WIKITEXT.read_text(encoding="utf-8")
    for text in texts[:11]:
        assert text in split.calibration.read_text(encoding="utf-8") and text not in evaluation
    for text in texts[11:22]:
        assert text in common.WIKITEXT_VALID.read_text(encoding="utf-8") and text not in wiki_test
    for text in texts[22:]:
        assert not any(text in r.text for r in heldout_c4)
