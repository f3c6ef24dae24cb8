"""Integration on the real stories260K weights and TinyStories text (skipped when absent)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gisp import PruneSettings, export_all, run
from gisp.cli import main
from gisp.eval.perplexity import file_perplexity
from gisp.export import load_pruned
from tests.engine.test_export import LOAD_WITHOUT_GISP

pytestmark = pytest.mark.integration


def heldout_text(stories_text: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Split the file: the first part calibrates, the last part (never seen) evaluates."""
    text = stories_text.read_text()
    cut = int(len(text) * 0.8)
    calib, held = tmp_path / "calib.txt", tmp_path / "held.txt"
    calib.write_text(text[:cut])
    held.write_text(text[cut:])
    return calib, held


def test_prune_to_20_and_40_percent(stories_model: Path, stories_text: Path, tmp_path: Path) -> None:
    calib, held = heldout_text(stories_text, tmp_path)
    settings = PruneSettings(targets=[0.2, 0.4], steps=4, samples=16, seq_len=128, heldout=8)
    trajectory, prepared = run(str(stories_model), calib, settings, reconstruction_dir=tmp_path / "out")
    paths = export_all(trajectory, tmp_path / "out", tensors_dir=tmp_path / "out")
    dense = file_perplexity(load_pruned_or_base(stories_model), prepared.loaded.tokenizer, held, 256, 40).perplexity
    ppl = [file_perplexity(load_pruned(p), prepared.loaded.tokenizer, held, 256, 40).perplexity for p in paths]
    assert all(p == p and p < 1e4 for p in ppl)  # finite
    assert dense < ppl[0] < ppl[1]
    assert all("perplexity" in r.metrics for r in trajectory.checkpoints)
    for record in trajectory.checkpoints:  # the default refit, measured on the weights exported
        assert record.reconstruction == settings.reconstruct != "none"
        assert record.metrics["perplexity"] < record.unreconstructed_metrics["perplexity"]
    # the dense model is measured like the checkpoints, before the first step, and kept when saved
    assert trajectory.dense_metrics["perplexity"] < trajectory.checkpoints[0].metrics["perplexity"]
    assert type(trajectory).from_dict(trajectory.to_dict()).dense_metrics == trajectory.dense_metrics

    # the exported folder loads where `gisp` cannot be imported
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_GISP, str(paths[0]), "[[1, 403, 407, 261]]"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def load_pruned_or_base(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


def next_sentence_task(stories_text: Path, count: int, seed: int) -> list[dict]:
    """Multiple choice from TinyStories: the true next sentence among three from other stories."""
    paragraphs = [p for p in stories_text.read_text().split("\n\n") if p.count(".") >= 3]
    split = [re.findall(r"[^.!?]+[.!?]", p) for p in paragraphs]
    sentences = [s.strip() for sents in split for s in sents]
    rng = random.Random(seed)
    items = []
    for sents in rng.sample(split, count):
        context, truth = " ".join(s.strip() for s in sents[:2]), sents[2].strip()
        choices = [truth] + rng.sample(sentences, 3)
        rng.shuffle(choices)
        items.append({"context": context, "choices": choices, "answer": choices.index(truth)})
    return items


@pytest.mark.parametrize("objective", ["perplexity", "completion", "margin"])
def test_each_objective_prunes_stories(objective: str, stories_model: Path, stories_text: Path, tmp_path: Path) -> None:
    data = tmp_path / "mc.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in next_sentence_task(stories_text, 48, seed=1)))
    settings = PruneSettings(targets=[0.3], steps=2, samples=32, seq_len=128, heldout=16, objective=objective)
    trajectory, _ = run(str(stories_model), data, settings)
    (record,) = trajectory.checkpoints
    assert abs(record.sparsity - 0.3) < 0.02
    assert 0.0 <= record.metrics["accuracy"] <= 1.0
    assert record.loss == record.loss  # the objective was computed (not NaN)
    if objective == "margin":
        assert record.loss < 0  # the correct continuation is already likelier than the wrong ones


def test_cli_prune_json_and_eval(stories_model: Path, stories_text: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    code = main(
        [
            "prune",
            str(stories_model),
            "--data",
            str(stories_text),
            "--targets",
            "0.25",
            "--steps",
            "2",
            "--samples",
            "8",
            "--seq-len",
            "64",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoints"][0]["target"] == 0.25
    assert (out / "trajectory.json").is_file() and (out / "sparsity-0.25" / "model.safetensors").is_file()
    assert (
        main(
            [
                "eval",
                str(out / "sparsity-0.25"),
                "--data",
                str(stories_text),
                "--seq-len",
                "128",
                "--max-windows",
                "4",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["parameters"] == summary["checkpoints"][0]["parameters"]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--targets", "1.5"], "outside (0, 1)", 2),
        (["--targets", "0.2", "--steps", "0"], "steps must be at least 1", 2),
        (["--targets", "0.2", "--data", "/no/such/file.txt"], "does not exist", 1),
        (["--targets", "0.2", "--data", "{empty}"], "fewer than one window", 1),
    ],
)
def test_cli_bad_arguments_exit_with_one_line(
    args: list[str], message: str, code: int, stories_model: Path, tmp_path: Path
) -> None:
    """Bad values are usage errors (exit 2); a run that fails on its input exits 1; one line each."""
    base = ["prune", str(stories_model), "--out", str(tmp_path / "o")]
    (tmp_path / "d.txt").write_text("Once upon a time.")
    args = [a.replace("{empty}", str(tmp_path / "d.txt")) for a in args]
    if "--data" not in args:
        base += ["--data", str(tmp_path / "d.txt")]
    result = subprocess.run(
        [sys.executable, "-m", "gisp.cli", *base, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("gisp")  # one line (after the model's loading bar)
    assert len(lines) == 1 or "Loading weights" in result.stderr


def test_cli_choices_come_from_the_registries(stories_model: Path, tmp_path: Path) -> None:
    """A name the registry does not know is refused by argparse itself, listing the choices (exit 2)."""
    from gisp.methods import method_names

    result = subprocess.run(
        [sys.executable, "-m", "gisp.cli", "prune", str(stories_model), "--data", "x", "--out", "o", "--targets", "0.2"]
        + ["--method", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr and all(name in result.stderr for name in method_names())
    help_text = subprocess.run(
        [sys.executable, "-m", "gisp.cli", "prune", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "(default: 16)" in help_text and "{" + ",".join(method_names()) + "}" in help_text


def test_trajectory_records_a_local_base_absolutely(stories_model: Path, tmp_path: Path, monkeypatch) -> None:
    """A trajectory made from a relative path must still find its base model from elsewhere."""
    from gisp.loading import load_model

    monkeypatch.chdir(stories_model.parent)
    loaded = load_model(stories_model.name)
    assert Path(loaded.source).is_absolute() and Path(loaded.source) == stories_model.resolve()


def test_cli_prunes_on_a_parquet_column(stories_model: Path, stories_text: Path, tmp_path: Path, capsys) -> None:
    """`gisp prune --data x.parquet --text-field body` reads the column the mapping names."""
    datasets = pytest.importorskip("datasets", reason="the `data` extra (datasets) is not installed")
    paragraphs = [p for p in stories_text.read_text().split("\n\n") if p.strip()][:200]
    data = tmp_path / "stories.parquet"
    datasets.Dataset.from_list([{"id": i, "body": p} for i, p in enumerate(paragraphs)]).to_parquet(str(data))
    common = ["prune", str(stories_model), "--data", str(data), "--targets", "0.25", "--steps", "1"]
    common += ["--samples", "4", "--seq-len", "64", "--out", str(tmp_path / "out"), "--json"]
    assert main([*common, "--text-field", "body"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"][0]["target"] == 0.25
    assert main([*common, "--text-field", "missing"]) == 1
    assert "row 1: missing field 'missing'" in capsys.readouterr().err
