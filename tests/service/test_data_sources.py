"""Uploads read with `datasets` (column mapping chosen as form fields, the original kept beside the
canonical file jobs read) and jobs that name a hub dataset, streamed by the real worker from an
operator's mirror folder through the same `load_dataset` call the hub would get."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from tests.service.conftest import TEXT, TINY, submit, wait_finished

pytestmark = pytest.mark.service
datasets = pytest.importorskip("datasets", reason="the `data` extra (datasets) is not installed")


def story_rows(count: int = 400) -> list[dict]:
    paragraphs = [p for p in TEXT.read_text().split("\n\n") if p.strip()]
    return [{"id": i, "body": p} for i, p in enumerate(paragraphs[:count])]


def parquet_bytes(rows: list[dict], tmp_path: Path) -> bytes:
    path = tmp_path / "rows.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path.read_bytes()


def upload(service, name: str, payload: bytes, **form: str):
    return service.client.post("/v1/datasets", files={"file": (name, payload)}, data=form, headers=service.headers())


def test_a_parquet_upload_keeps_the_original_and_a_canonical_file(service, tmp_path) -> None:
    payload = parquet_bytes(story_rows(50), tmp_path)
    response = upload(service, "stories.parquet", payload, text_field="body")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["format"], dataset["kind"], dataset["records"]) == ("parquet", "text", 50)
    assert dataset["sha256"] == hashlib.sha256(payload).hexdigest() != dataset["canonical_sha256"]
    assert dataset["columns"] == {"text_field": "body"}
    store = service.rt.store
    assert store.upload_path(dataset["sha256"], "parquet").read_bytes() == payload
    canonical = store.upload_path(dataset["canonical_sha256"], "jsonl")
    assert hashlib.sha256(canonical.read_bytes()).hexdigest() == dataset["canonical_sha256"]


def test_a_zipped_save_to_disk_folder_with_a_choice_mapping(service, tmp_path) -> None:
    rows = [{"q": f"q{i}", "opts": ["a", "b", "c"], "gold": i % 3} for i in range(9)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in (tmp_path / "saved").iterdir():
            archive.write(file, f"saved/{file.name}")
    response = upload(
        service, "mc.zip", buffer.getvalue(), question_field="q", choices_field="opts", answer_field="gold"
    )
    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["records"], response.json()["format"]) == ("choice", 9, "zip")


def test_bad_tables_and_mappings_are_422s_naming_the_row_and_field(service, tmp_path) -> None:
    rows = [{"body": "fine"}, {"body": None}]
    bad_row = upload(service, "rows.parquet", parquet_bytes(rows, tmp_path), text_field="body")
    assert bad_row.status_code == 422 and "row 2" in bad_row.json()["detail"] and "'body'" in bad_row.json()["detail"]
    missing = upload(service, "rows.parquet", parquet_bytes(rows, tmp_path), text_field="nope")
    assert missing.status_code == 422 and "row 1: missing field 'nope'" in missing.json()["detail"]
    mixed = upload(service, "rows.parquet", parquet_bytes(rows, tmp_path), text_field="body", prompt_field="p")
    assert mixed.status_code == 422 and mixed.json()["errors"][0]["field"] == "text_field"
    corrupt = upload(service, "rows.arrow", b"not arrow")
    assert corrupt.status_code == 422 and corrupt.json()["errors"][0]["field"] == "file"


def test_a_job_streams_a_hub_dataset_from_a_mirror(service, tmp_path) -> None:
    mirror = service.settings.dataset_mirror_paths[0] / "local-org" / "stories"
    mirror.mkdir(parents=True, exist_ok=True)
    (mirror / "train.parquet").write_bytes(parquet_bytes(story_rows(), tmp_path))
    hub = {"hub": "local-org/stories", "split": "train", "rows": 300, "columns": {"text_field": "body"}}
    response = submit(service, {**TINY, "hub_dataset": hub})
    assert response.status_code == 201, response.text
    job = wait_finished(service, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["dataset_id"] is None and job["hub_dataset"]["hub"] == "local-org/stories"
    streamed = service.rt.store.hub_data_path(job["id"]).read_text().splitlines()
    assert len(streamed) == 300  # the row cap, not the mirror's 400


def test_hub_dataset_submissions_are_validated(service, text_dataset) -> None:
    both = submit(service, {**TINY, "dataset_id": text_dataset["id"], "hub_dataset": {"hub": "a/b"}})
    assert both.status_code == 422 and both.json()["errors"][0]["field"] == "dataset_id"
    assert submit(service, {**TINY}).status_code == 422
    path_like = submit(service, {**TINY, "hub_dataset": {"hub": "../etc"}})
    assert path_like.status_code == 422 and "hub_dataset.hub" in path_like.text
    too_many = submit(service, {**TINY, "hub_dataset": {"hub": "a/b", "rows": 10**9}})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "hub_dataset.rows"
    wrong_kind = submit(service, {**TINY, "objective": "margin", "hub_dataset": {"hub": "a/b"}})
    assert wrong_kind.status_code == 422 and "choices" in wrong_kind.json()["detail"]


def test_an_unreachable_hub_dataset_fails_the_job_with_the_reason(service) -> None:
    response = submit(service, {**TINY, "hub_dataset": {"hub": "no-such-org/no-such-data", "rows": 10}})
    job = wait_finished(service, response.json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_data"
    assert "no-such-org/no-such-data" in job["error"]["message"]
