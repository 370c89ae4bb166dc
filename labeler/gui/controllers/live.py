"""The window's ear on a shared project: changes other people make arrive as a signal.

:class:`LiveUpdates` runs a :class:`labeler.core.live.ChangeListener` on a thread of its own
(connecting, then waiting for announcements, never on the UI thread) and emits each batch of
changes; the window re-reads only the images named. A SQLite project has nothing to listen to.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from labeler.core.live import Change, ChangeListener
from labeler.core.store import Project

WAIT_S = 0.5
"""How long the listener waits for an announcement before looking whether it should stop."""


class LiveUpdates(QObject):
    """Signals: ``changed(list[Change])`` (queued to the UI thread), ``failed(str)`` when the
    listener cannot connect or loses its connection (the window goes on without live updates)."""

    changed = Signal(list)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()

    def start(self, project: Project) -> None:
        """Listen to ``project`` (stopping any earlier listener); nothing for a SQLite project."""
        self.stop()
        if project.url is None:
            return
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(project.url, self._stop, self._subscribed), name="labeler-live", daemon=True
        )
        self._thread.start()

    def is_listening(self) -> bool:
        """Whether the listener is subscribed (every change from now on will be heard)."""
        return self._thread is not None and self._thread.is_alive() and self._subscribed.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self, url: str, stop: threading.Event, subscribed: threading.Event) -> None:
        try:
            listener = ChangeListener(url)
        except ConnectionError as exc:
            if not stop.is_set():
                self.failed.emit(f"Other people's changes will not show up live: {exc}")
            return
        subscribed.set()
        try:
            while not stop.is_set():
                changes: list[Change] = listener.wait(WAIT_S)
                if changes and not stop.is_set():
                    self.changed.emit(changes)
        except ConnectionError as exc:
            if not stop.is_set():
                self.failed.emit(f"Other people's changes no longer show up live: {exc}")
        finally:
            listener.close()
