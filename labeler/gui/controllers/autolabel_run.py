"""Auto-labelling from the window: one image in a worker thread, or every image not done in a
child process (``python -m labeler auto-label PROJECT --plugin NAME --undone --progress json``).

Results are written to the project by the engine; the controller only says which image changed.
The rule for one image (the active model version, kept loaded) is
:class:`labeler.learning.one_image.OneImageLabeller`; the child's events are those of
:mod:`labeler.learning.events`.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, Signal

from labeler.core.location import ChildProject
from labeler.core.store import Project
from labeler.gui.controllers.workers import ChildRun, FunctionWorker
from labeler.learning import events as ev
from labeler.learning.one_image import OneImageLabeller


class AutoLabelController(ChildRun):
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
    FAILED = "Auto-labelling failed"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: FunctionWorker | None = None
        self._done = 0
        self._total = 0
        self.one_image = OneImageLabeller()  # keeps the model of the last one-image run loaded

    # ---- one image (thread) ---------------------------------------------------------------

    def image_running(self) -> bool:
        return self.worker is not None and not self.worker.done

    def label_image(self, project: Project, plugin: str, image_id: int) -> None:
        if self.image_running():
            return
        worker = FunctionWorker(self.one_image.label, project, plugin, image_id)
        worker.signals.finished.connect(lambda _n: self.imageRunning.emit(False))
        worker.signals.failed.connect(lambda _m: self.imageRunning.emit(False))
        worker.signals.finished.connect(lambda _n: self.imageLabelled.emit(image_id))
        worker.signals.failed.connect(self.imageFailed.emit)
        self.imageRunning.emit(True)
        self.worker = worker.start()

    # ---- all not done (child process) -----------------------------------------------------

    def batch_running(self) -> bool:
        return self.is_running()

    def label_all(self, project: ChildProject, plugin: str) -> None:
        if self.batch_running():
            raise RuntimeError("auto-labelling is already running")
        self._done, self._total = 0, 0
        args = ["auto-label", project.argument, "--plugin", plugin, "--undone", "--progress", "json", *project.options]
        self._start_child(args, env=project.env)
        self.batchStarted.emit()

    def cancel_all(self) -> None:
        self.cancel()

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.AutoLabelStart):
            self._total = event.total
            self.batchProgress.emit(0, self._total, math.nan)
        elif isinstance(event, ev.AutoLabelProgress):
            self._done, self._total = event.done, event.total
            if event.image_id is not None:
                self.imageLabelled.emit(event.image_id)
            self.batchProgress.emit(self._done, self._total, math.nan if event.eta is None else event.eta)

    def cancelled_message(self) -> str:
        return f"Auto-labelling cancelled after {self._done} of {self._total} images."

    def success_message(self) -> str:
        return f"Auto-labelled {self._done} images."

    def ended(self, *, ok: bool, cancelled: bool, code: int, message: str, tail: str) -> None:
        self.batchFinished.emit(ok, message, tail)
