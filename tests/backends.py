"""The two project stores the tests run on (not a test module): SQLite, the project in a folder,
and PostgreSQL, the project in a database on the session's test server with that folder as its
image root.

A test names its projects by their folder on both: :class:`Backend` makes the project for a folder
and opens it again (in the store, or in the window the way a user opens each kind), remembering
which database holds the project of each folder. The ``backend`` fixture (``tests/conftest.py``)
gives a test one per backend; :data:`sqlite_only` keeps a test to SQLite, with the reason beside
it.
"""

from __future__ import annotations

import shutil
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from labeler.core.store import Project

BACKENDS = ("sqlite", "postgresql")

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""Runs a test on SQLite only; say why beside it (the SQLite file itself, or a heavy duplicate)."""

_databases = count(1)


class Server(Protocol):
    def create_database(self, name: str, *, template: str | None = None) -> str: ...


class Window(Protocol):
    def open_path(self, path: str | Path, *, image_root: str | Path | None = None) -> bool: ...


def new_database_name() -> str:
    """A database name not used before in this test session."""
    return f"t{next(_databases)}"


class Backend:
    """Projects on one backend, named by their image folder."""

    def __init__(self, name: str, server: Server | None = None) -> None:
        assert name in BACKENDS and (server is not None) == (name == "postgresql")
        self.name = name
        self._server = server
        self._urls: dict[Path, str] = {}

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    @property
    def is_postgresql(self) -> bool:
        return self.name == "postgresql"

    def url(self, folder: str | Path) -> str | None:
        """The database of the project for ``folder`` (a new, empty one the first time it is
        asked for); ``None`` on SQLite, where the project is the folder."""
        if self._server is None:
            return None
        key = Path(folder).resolve()
        if key not in self._urls:
            self._urls[key] = self._server.create_database(new_database_name())
        return self._urls[key]

    def location(self, folder: str | Path) -> tuple[str | Path, Path | None]:
        """How a user names the project for ``folder``: ``(folder, None)`` on SQLite, ``(URL,
        image root)`` on PostgreSQL (what ``labeler URL --image-root DIR`` and the window take)."""
        url = self.url(folder)
        return (Path(folder), None) if url is None else (url, Path(folder))

    def args(self, folder: str | Path) -> list[str]:
        """The words that name the project for ``folder`` on a ``labeler`` command line (after the
        verb): the folder, or the URL and ``--image-root`` (both as the project names itself in
        the hints it prints: the folder resolved)."""
        url = self.url(folder)
        root = str(Path(folder).resolve())
        return [root] if url is None else [url, "--image-root", root]

    def create(self, folder: str | Path, *, exist_ok: bool = False) -> Project:
        """A new project whose images are relative to ``folder`` (made if missing)."""
        from labeler.core.store import Project

        folder = Path(folder)
        path, image_root = self.location(folder)
        if image_root is not None:
            folder.mkdir(parents=True, exist_ok=True)
        return Project.create(path, exist_ok=exist_ok, image_root=image_root)

    def open(self, folder: str | Path) -> Project:
        """The project made for ``folder``, opened again."""
        from labeler.core.store import Project

        path, image_root = self.location(folder)
        return Project.open(path, image_root=image_root)

    def open_in(self, window: Window, folder: str | Path) -> bool:
        """Open the project for ``folder`` in ``window`` as a user does: the folder, or the URL
        with this machine's image root (a shared project)."""
        path, image_root = self.location(folder)
        return window.open_path(path, image_root=image_root)

    def copy(self, source: str | Path, target: str | Path) -> None:
        """Copy the project for ``source`` (no connection to it may be open) with its folder to
        ``target``: the folder (images, models); on PostgreSQL also the database, as a new one
        made from it."""
        shutil.copytree(source, target)
        if self._server is not None:
            template = self.url(source)
            assert template is not None
            self._urls[Path(target).resolve()] = self._server.create_database(
                new_database_name(), template=template.rsplit("/", 1)[1]
            )
