"""Shared fixtures: where ../shared is, and tiny random Llama-family models built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread: the suite shares two cores with the worker subprocesses of the service tests, and
# OpenMP threads spinning against each other made steps 5-50x slower there.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("GISP_SHARED", REPO.parent / "shared")).expanduser().resolve()


def shared_path(*parts: str) -> Path:
    """A file under the shared assets folder, or a skip that says how to provide it."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is missing: put the shared assets beside the repo or set GISP_SHARED")
    return path


@pytest.fixture
def stories_model() -> Path:
    return shared_path("models", "stories260K")


@pytest.fixture
def stories_text() -> Path:
    return shared_path("data", "tinystories", "tinystories_val.txt")
