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


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for this test session (see tests/pg_server.py); skips with the reason
    when none can be started here."""
    import pg_server as module

    try:
        server = module.start()
    except module.Unavailable as exc:
        pytest.skip(f"PostgreSQL backend not tested: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new, empty PostgreSQL database on the session's server."""
    from backends import new_database_name

    return str(pg_server.create_database(new_database_name()))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest):
    """The store a test's projects go in (a :class:`backends.Backend`): each test using it runs on
    SQLite and on PostgreSQL (skipped, with the reason, where no server can be started). Module
    scope, so that a module's fixtures that build a project once can use it too."""
    from backends import Backend

    if request.param == "postgresql":
        return Backend("postgresql", request.getfixturevalue("pg_server"))
    return Backend("sqlite")


@pytest.fixture
def make_project(backend):
    """``make_project(folder)``: a new project whose images are relative to ``folder``, in that
    folder (SQLite) or in a new PostgreSQL database with ``folder`` as its image root; each test
    using it runs on both backends. Every project it made is closed at the end."""
    from labeler.core.store import Project

    made: list[Project] = []

    def make(folder: Path) -> Project:
        project = backend.create(folder)
        made.append(project)
        return project

    yield make
    for project in made:
        project.close()
