"""Auto-labelling from the window: one image in a worker thread, or every image not done in a
child process (``python -m labeler auto-label PROJECT --plugin NAME --undone --progress json``).

Results are written to the project by the engine; the controller only says which image changed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from labeler.core.store import Project
from labeler.gui.workers import CliJob, FunctionWorker


def label_one_image(project: Project, plugin: str, image_id: int, cache: dict[tuple[str, int], Any]) -> int:
    """Run the active model version of ``plugin`` on one image and store its proposals.

    Runs on a worker thread; imports the engine (and torch) lazily. ``cache`` keeps the loaded
    model between clicks, keyed by plugin and version id. Returns how many proposals were written.
    """
    from labeler.core.images import ImageError
    from labeler.core.store import ProjectError
    from labeler.learning.autolabel import iter_auto_label, load_model

    version = project.active_model_version(plugin)
    if version is None or version.id is None:
        raise ProjectError(f"plugin {plugin!r} has no trained model in this project yet; train it first")
    key = (plugin, version.id)
    if key not in cache:
        cache.clear()
        cache[key] = load_model(project, plugin, version_id=version.id)
    count = 0
    for step in iter_auto_label(project, cache[key], [image_id]):
        if step.error is not None:
            raise ImageError(step.error)
        count = step.proposals
    return count


class AutoLabelController(QObject):
    """Signals: ``imageLabelled(image_id)`` whenever proposals of an image were (re)written;
    ``imageRunning(running)`` when a one-image run starts and ends;
    ``imageFailed(message)`` for a one-image run that failed; ``batchProgress(done, total, eta_s)``
    (eta is NaN until known); ``batchFinished(ok, message, log_tail)``."""

    imageLabelled = Signal(int)
    imageFailed = Signal(str)
    imageRunning = Signal(bool)
    batchStarted = Signal()
    batchProgress = Signal(int, int, float)
    batchFinished = Signal(bool, str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: FunctionWorker | None = None
        self.job: CliJob | None = None
        self._done = 0
        self._total = 0
        self.error: str | None = None
        self._models: dict[tuple[str, int], Any] = {}  # loaded model of the last one-image run

    # ---- one image (thread) ---------------------------------------------------------------

    def image_running(self) -> bool:
        return self.worker is not None and not self.worker.done

    def label_image(self, project: Project, plugin: str, image_id: int) -> None:
        if self.image_running():
            return
        worker = FunctionWorker(label_one_image, project, plugin, image_id, self._models)
        worker.signals.finished.connect(lambda _n: self.imageRunning.emit(False))
        worker.signals.failed.connect(lambda _m: self.imageRunning.emit(False))
        worker.signals.finished.connect(lambda _n: self.imageLabelled.emit(image_id))
        worker.signals.failed.connect(self.imageFailed.emit)
        self.imageRunning.emit(True)
        self.worker = worker.start()

    # ---- all not done (child process) -----------------------------------------------------

    def batch_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def label_all(self, project_root: Path, plugin: str) -> None:
        if self.batch_running():
            raise RuntimeError("auto-labelling is already running")
        self._done, self._total = 0, 0
        self.error = None
        self.job = CliJob(["auto-label", str(project_root), "--plugin", plugin, "--undone", "--progress", "json"], self)
        self.job.event.connect(self._on_event)
        self.job.finished.connect(self._on_finished)
        self.job.start()
        self.batchStarted.emit()

    def cancel_all(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start" and isinstance(event.get("total"), int):
            self._total = int(event["total"])
            self.batchProgress.emit(0, self._total, math.nan)
            return
        if kind == "error":
            self.error = str(event.get("message") or "unknown error")
            if self.job is not None:
                self.job.add_log(f"error: {self.error}")
            return
        if kind not in (None, "progress"):
            return
        done, total = event.get("done"), event.get("total")
        if isinstance(done, int) and isinstance(total, int):
            self._done, self._total = done, total
        image_id = event.get("image_id")
        if isinstance(image_id, int):
            self.imageLabelled.emit(image_id)
        eta = event.get("eta")
        if not isinstance(eta, (int, float)):
            eta = estimate_eta(time.monotonic() - (self.job.started_at if self.job else 0.0), self._done, self._total)
        self.batchProgress.emit(self._done, self._total, float(eta))

    def _on_finished(self, code: int, tail: str) -> None:
        job = self.job
        cancelled = job is not None and job.cancelled
        if cancelled:
            message = f"Auto-labelling cancelled after {self._done} of {self._total} images."
            if job is not None and job.killed:
                message = f"{message} {job.stop_note()}"
        elif code == 0:
            message = f"Auto-labelled {self._done} images."
        else:
            message = f"Auto-labelling failed: {self.error}" if self.error else f"Auto-labelling failed (exit code {code})."
        self.batchFinished.emit(code == 0 and not cancelled, message, tail)
        if job is not None:
            job.deleteLater()
        self.job = None


def estimate_eta(elapsed: float, done: int, total: int) -> float:
    """Seconds left at the average rate so far (NaN before the first image)."""
    if done <= 0 or total <= 0:
        return math.nan
    return elapsed / done * max(0, total - done)


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "estimating time left…"
    s = round(seconds)
    return f"about {s // 60} min {s % 60:02d} s left" if s >= 60 else f"about {s} s left"
