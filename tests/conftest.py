"""Shared fixtures: where the real data sets are, and small generated projects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No display needed: Qt tests render offscreen unless the caller chose a platform.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def own_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every window or CLI child it starts) reads and writes its own settings file,
    never the user's: a test's tiny window, its recent projects and its plugin choice must not reach
    the next run of the app. Tests that look at settings set ``LABELER_SETTINGS`` themselves."""
    path = tmp_path_factory.mktemp("settings") / "labeler.ini"
    monkeypatch.setenv("LABELER_SETTINGS", str(path))
    return path


def shared_data_dir() -> Path:
    """``$LABELER_DATA``, else ``../shared/data`` beside the repository."""
    env = os.environ.get("LABELER_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture
def shared_data() -> Path:
    """The real data sets folder; the test skips with a reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data sets not present at {path} (set LABELER_DATA)")
    return path
