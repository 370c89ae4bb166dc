"""What the app remembers between runs (QSettings): recent projects, window geometry and docks,
the last image shown per project, panel options.

``$LABELER_SETTINGS`` names an INI file to use instead of the user's settings (tests set it).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from labeler.core.pg import is_database_url

MAX_RECENT = 10


class AppSettings:
    """Typed access to the app's QSettings."""

    def __init__(self, settings: QSettings | None = None) -> None:
        if settings is None:
            path = os.environ.get("LABELER_SETTINGS")
            settings = QSettings(path, QSettings.Format.IniFormat) if path else QSettings("labeler", "labeler")
        self.qsettings = settings

    # recent projects -----------------------------------------------------------------------

    def recent_projects(self) -> list[str]:
        value = self.qsettings.value("recent_projects", [])
        items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
        return [p for p in items if isinstance(p, str) and p]

    def add_recent_project(self, path: str | os.PathLike[str]) -> None:
        """Remember a project folder, or a database URL (which :func:`~labeler.core.location.location_name`
        gives without its password)."""
        text = str(path) if is_database_url(str(path)) else str(Path(path).resolve())
        items = [text] + [p for p in self.recent_projects() if p != text]
        self.qsettings.setValue("recent_projects", items[:MAX_RECENT])

    def forget_recent_project(self, path: str) -> None:
        self.qsettings.setValue("recent_projects", [p for p in self.recent_projects() if p != path])

    # window --------------------------------------------------------------------------------

    def geometry(self) -> QByteArray | None:
        value = self.qsettings.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        value = self.qsettings.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    # per project ---------------------------------------------------------------------------

    @staticmethod
    def _key(project: str | Path) -> str:
        """``project`` is a folder or a project's location name (a URL without its password)."""
        return "projects/" + str(project).replace("/", "|").replace("\\", "|")

    project_key = _key
    """The settings group of one project (``project_key(root) + "/name"``)."""

    def last_image(self, project: str | Path) -> int | None:
        value = self.qsettings.value(self._key(project) + "/last_image")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def set_last_image(self, project: str | Path, image_id: int) -> None:
        self.qsettings.setValue(self._key(project) + "/last_image", int(image_id))

    def image_root(self, url: str) -> str | None:
        """The folder this machine last used as the image root of the database project ``url``."""
        value = self.qsettings.value(self._key(url) + "/image_root")
        return value if isinstance(value, str) and value else None

    def set_image_root(self, url: str, folder: str | Path) -> None:
        self.qsettings.setValue(self._key(url) + "/image_root", str(folder))

    # options -------------------------------------------------------------------------------

    def value(self, key: str, default: object) -> object:
        value = self.qsettings.value(key, default)
        if isinstance(default, bool) and isinstance(value, str):
            return value.lower() in ("true", "1")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
            try:
                return type(default)(float(value))
            except ValueError:
                return default
        return value

    def set_value(self, key: str, value: object) -> None:
        self.qsettings.setValue(key, value)

    def sync(self) -> None:
        self.qsettings.sync()
