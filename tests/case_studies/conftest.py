"""Shared fixtures of the case-study tests: the real data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from case_studies._data import DATA_ENV_VAR

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """``$VVUQ_TWIN_DATA`` or ``../shared/data`` next to the repository, if it holds the data."""
    env = os.environ.get(DATA_ENV_VAR)
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "SHA256SUMS").is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The real case-study data (skips the test when they are not available)."""
    d = shared_data_dir()
    if d is None:
        pytest.skip(f"real case-study data not found: set {DATA_ENV_VAR} or provide ../shared/data")
    return d
