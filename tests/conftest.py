"""Shared fixtures: real captures from ../shared/data (read-only; copy before writing) and GPU skips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("SPLATFORGE_TEST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real captures; tests needing it are skipped with a reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real test captures not found at {path} (set SPLATFORGE_TEST_DATA)")
    return path


@pytest.fixture
def copy_capture(data_dir, tmp_path):
    """copy_capture("fox") -> a private copy of ../shared/data/fox in tmp_path (never write to shared)."""

    def _copy(name: str) -> Path:
        src = data_dir / name
        if not src.exists():
            pytest.skip(f"test capture {name} not found in {data_dir}")
        dst = tmp_path / name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        return dst

    return _copy
