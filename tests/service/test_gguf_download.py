"""A checkpoint's second artifact: `?format=gguf` builds the GGUF file on first request (from the
job the real worker ran), caches it with its own sha256 (ETag, Range, If-None-Match as for the
tar), and llama.cpp runs it with the downloaded Hugging Face checkpoint's logits."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from gisp.eval import llamacpp

pytestmark = pytest.mark.service


def _checkpoint(service, finished_job) -> dict:
    listed = service.client.get(f"/v1/jobs/{finished_job['id']}/checkpoints", headers=service.headers()).json()
    return listed["data"][1]


def test_the_gguf_is_a_cached_second_artifact_with_its_own_sha256(service, finished_job):
    pytest.importorskip("gguf", reason="pip install 'gisp-service[gguf]'")
    checkpoint = _checkpoint(service, finished_job)
    url = f"/v1/checkpoints/{checkpoint['id']}/download"
    response = service.client.get(url, params={"format": "gguf"}, headers=service.headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content[:4] == b"GGUF"
    sha = hashlib.sha256(response.content).hexdigest()
    assert response.headers["etag"] == f'"{sha}"' and response.headers["x-checksum-sha256"] == sha
    assert response.headers["content-disposition"].endswith('-sparsity-0.40.gguf"')
    listed = service.client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=service.headers()).json()
    assert listed["gguf_sha256"] == sha and listed["sha256"] != sha
    again = service.client.get(url, params={"format": "gguf"}, headers=service.headers())
    assert again.content == response.content
    part = service.client.get(url, params={"format": "gguf"}, headers={**service.headers(), "Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == response.content[10:100]
    cached = service.client.get(
        url, params={"format": "gguf"}, headers={**service.headers(), "If-None-Match": response.headers["etag"]}
    )
    assert cached.status_code == 304
    tar = service.client.get(url, headers=service.headers())  # the tar is still the default artifact
    assert tar.headers["content-type"] == "application/x-tar" and tar.headers["etag"] != response.headers["etag"]


def test_an_unknown_format_is_a_422_naming_the_field(service, finished_job):
    checkpoint = _checkpoint(service, finished_job)
    response = service.client.get(
        f"/v1/checkpoints/{checkpoint['id']}/download", params={"format": "onnx"}, headers=service.headers()
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "format" in {e["field"] for e in response.json()["errors"]}


@pytest.mark.skipif(not llamacpp.available(), reason="llama.cpp is not installed: pip install 'gisp-service[llamacpp]'")
def test_the_downloaded_gguf_runs_in_llamacpp_like_the_downloaded_folder(service, finished_job, tmp_path):
    checkpoint = _checkpoint(service, finished_job)
    url = f"/v1/checkpoints/{checkpoint['id']}/download"
    gguf_file = tmp_path / "model.gguf"
    gguf_file.write_bytes(service.client.get(url, params={"format": "gguf"}, headers=service.headers()).content)
    with tarfile.open(fileobj=io.BytesIO(service.client.get(url, headers=service.headers()).content)) as tar:
        tar.extractall(tmp_path / "ckpt", filter="data")
    prompts = ["Once upon a time, there was a little girl", "The dog was happy because"]
    result = llamacpp.agreement(gguf_file, tmp_path / "ckpt", prompts, n_ctx=128)
    assert not result.tokenized_differently
    assert result.max_abs_diff < 0.1 and result.top1 >= 0.9  # the service's GGUF is f16 (docs/export.md)
