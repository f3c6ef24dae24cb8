"""The client CLI against a real `gisp serve` (SQLite, local broker, real Celery worker, real
stories260K weights): submit --wait, checkpoints, download within a parameter budget, then load
the download with plain transformers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gisp.cli import main
from gisp_service.client import GispClient
from gisp_service.client.display import NESTED
from tests.conftest import shared_path
from tests.live import live_server

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]


class CutOnce(httpx.HTTPTransport):
    """The real transport, except that the first download's body breaks off after `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.ranges = limit, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/download"):
            self.ranges.append((request.headers.get("range"), response.status_code))
            if len(self.ranges) == 1:
                response.stream = _Cut(response.stream, self.limit)
        return response


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __iter__(self):
        sent = 0
        for chunk in self.inner:
            chunk = chunk[: self.limit - sent]
            sent += len(chunk)
            yield chunk
            if sent >= self.limit:
                raise httpx.ReadError("connection reset (injected)")

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[str, str]]:
    models = shared_path("models", "stories260K").parent
    with live_server(tmp_path_factory.mktemp("gisp-data"), models, tenant="cli-test") as server:
        yield server.url, server.key


@pytest.fixture
def small_text(tmp_path) -> Path:
    """The first ~24 KB of TinyStories: enough for 8 x 64-token samples plus held-out windows."""
    text = shared_path("data", "tinystories", "tinystories_val.txt").read_text()[:24_000]
    path = tmp_path / "stories.txt"
    path.write_text(text)
    return path


def test_submit_wait_checkpoints_download_and_load(service, small_text, tmp_path, capsys):
    url, key = service
    flags = ["--url", url, "--api-key", key]
    code = main(
        ["submit", "stories260K", "--data", str(small_text), "--targets", "0.2,0.4"]
        + ["--steps", "4", "--samples", "8", "--seq-len", "64", "--wait", *flags]
    )
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    job_id = out.strip().splitlines()[-1]
    assert job_id.startswith("job_") and "succeeded with 2 checkpoints" in err

    assert main(["checkpoints", job_id, *flags]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in table[2:-1]]
    assert [row[1] for row in rows] == ["0.20", "0.40"] and all(row[0].startswith("ckpt_") for row in rows)
    assert table[-1] == NESTED[True]  # a ranking method's family is nested, and the table says so

    with GispClient(url, key) as client:
        listing = client.checkpoints(job_id)
        listed = {c["target_sparsity"]: c for c in listing}
    assert listing.nested is True
    budget = listed[0.2]["parameter_count"] - 1  # too big for 0.2, so the least-pruned fit is 0.4
    out_dir = tmp_path / "model"
    assert main(["download", job_id, "--max-params", str(budget), "--out", str(out_dir), *flags]) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()) == out_dir and f"selected {listed[0.4]['id']}" in err
    assert json.loads((out_dir / "config.json").read_text())["gisp"]["target_sparsity"] == pytest.approx(0.4)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out_dir), trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir), trust_remote_code=True)
    assert sum(p.numel() for p in model.parameters()) == listed[0.4]["parameter_count"]
    with torch.no_grad():
        logits = model(**tokenizer("Once upon a time", return_tensors="pt")).logits
    assert logits.shape[-1] == 512 and torch.isfinite(logits).all()
    capsys.readouterr()  # transformers' loading bars

    # the same checkpoint as one GGUF file (sha256 checked against the ETag), which llama.cpp runs
    gguf_file = tmp_path / "model.gguf"
    args = ["download", job_id, "--max-params", str(budget), "--format", "gguf", "--out", str(gguf_file)]
    assert main([*args, *flags]) == 0
    assert Path(capsys.readouterr().out.strip()) == gguf_file and gguf_file.read_bytes()[:4] == b"GGUF"
    assert main([*args, *flags]) != 0 and "exists" in capsys.readouterr().err  # never overwritten
    from gisp.eval import llamacpp

    if llamacpp.available():
        with llamacpp.LlamaCpp(gguf_file, n_ctx=64) as llm:
            assert llm.tokenize("Once upon a time") == tokenizer("Once upon a time").input_ids
            assert llm.greedy("Once upon a time", max_tokens=8).strip()

    # a transfer cut after 5000 bytes resumes against the real server's Range/If-Range handling
    cut = CutOnce(5000)
    with GispClient(url, key, transport=cut) as client:
        resumed = client.download(listed[0.2]["id"], tmp_path / "resumed")
    assert cut.ranges == [(None, 200), ("bytes=5000-", 206)]
    assert json.loads((resumed / "config.json").read_text())["gisp"]["target_sparsity"] == pytest.approx(0.2)

    # a budget nothing meets, and a job that is not there: one readable line each, non-zero exit
    assert main(["download", job_id, "--max-params", "1000", "--out", str(tmp_path / "none"), *flags]) != 0
    err = capsys.readouterr().err
    assert err.startswith("gisp: error: 404") and err.count("\n") == 1 and not (tmp_path / "none").exists(), err
    assert main(["status", "job_doesnotexist", *flags]) != 0
    assert capsys.readouterr().err.startswith("gisp: error: 404")
    assert main(["status", job_id, "--url", url, "--api-key", "wrong"]) != 0
    assert capsys.readouterr().err.startswith("gisp: error: 401")


def test_wait_exits_non_zero_when_the_job_fails(service, small_text, capsys):
    url, key = service
    code = main(
        ["submit", "nobody/no-such-model", "--data", str(small_text), "--targets", "0.3", "--steps", "2"]
        + ["--samples", "8", "--seq-len", "64", "--wait", "--poll", "0.3", "--url", url, "--api-key", key]
    )
    out, err = capsys.readouterr()
    assert code == 1
    job_id = out.strip().splitlines()[-1]
    assert f"gisp: job {job_id} failed: model_not_found" in err and "Traceback" not in err


def test_checkpoint_listings_say_whether_a_tyr_family_is_nested(service, small_text, capsys):
    """A tyr job's targets are searched apart: the client's list, the table and --json carry the
    server's `nested` for the whole family, across pages."""
    url, key = service
    flags = ["--url", url, "--api-key", key]
    code = main(
        ["submit", "stories260K", "--data", str(small_text), "--targets", "0.3,0.5", "--method", "tyr"]
        + ["--samples", "8", "--seq-len", "64", "--tyr-rounds", "1", "--tyr-generations", "2"]
        + ["--tyr-offspring", "4", "--tyr-levels", "5", "--tyr-stage-samples", "2,8", "--tyr-stage-keep", "2"]
        + ["--wait", *flags]
    )
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    job_id = out.strip().splitlines()[-1]
    raw = httpx.get(f"{url}/v1/jobs/{job_id}/checkpoints", headers={"Authorization": f"Bearer {key}"}).json()
    first = httpx.get(f"{url}/v1/jobs/{job_id}/checkpoints?limit=1", headers={"Authorization": f"Bearer {key}"}).json()
    assert len(raw["data"]) == 2 and first["has_more"]
    with GispClient(url, key) as client:
        listing, paged = client.checkpoints(job_id), client.checkpoints(job_id, page_size=1)  # one page, two
    for got in (listing, paged):
        assert [c["id"] for c in got] == [c["id"] for c in raw["data"]] and got.nested is raw["nested"]

    assert main(["checkpoints", job_id, *flags]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == NESTED[raw["nested"]]
    assert main(["checkpoints", job_id, "--json", *flags]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["nested"] is raw["nested"] and [c["id"] for c in printed["data"]] == [c["id"] for c in raw["data"]]
    print(f"tyr family nested: {raw['nested']}")
