"""Training controls: start / cancel, progress, live loss and metric plot, log of a failed run,
and the option to retrain by itself after every N newly done images."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from labeler.gui.panels.plot import LossPlot
from labeler.learning import events as ev


class TrainingPanel(QWidget):
    """The main window connects the buttons to :class:`~labeler.gui.controllers.training_run.TrainingController`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(5, 24 * 3600)
        self.budget.setDecimals(0)
        self.budget.setValue(120)
        self.budget.setSuffix(" s")
        self.budget.setToolTip("Time budget of one training run")
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train the chosen plugin on the done images, in the background (Ctrl+T)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.auto_retrain = QCheckBox("Retrain every")
        self.retrain_every = QSpinBox()
        self.retrain_every.setRange(1, 10_000)
        self.retrain_every.setValue(10)
        self.retrain_every.setSuffix(" done")
        self.retrain_every.setToolTip("Start a training run after this many more images are marked done")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.status = QLabel("Not trained in this session.")
        self.status.setWordWrap(True)
        self.plot = LossPlot()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(200)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("The end of a failed run's log shows here.")
        self.log.setMaximumHeight(140)
        self.log.setVisible(False)  # shown with the end of a failed run's log
        self._last_x = 0.0  # the plot's x so far (steps)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        # short rows rather than one long one: the panel stays readable in a column of layout.READABLE_PANEL_WIDTH
        row = QHBoxLayout()
        row.addWidget(self.train_button, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        options = QGridLayout()
        options.addWidget(QLabel("Budget"), 0, 0)
        options.addWidget(self.budget, 0, 1)
        options.addWidget(self.auto_retrain, 1, 0)
        options.addWidget(self.retrain_every, 1, 1)
        options.setColumnStretch(1, 1)
        layout.addLayout(options)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.log)

    def reset(self) -> None:
        """Forget the previous project's run: message, progress, plot and log."""
        self._last_x = 0.0
        self.progress.setValue(0)
        self.status.setText("Not trained in this session.")
        self.plot.clear()
        self.log.clear()
        self.log.setVisible(False)

    def set_running(self, running: bool, plugin: str = "") -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self._last_x = 0.0
            self.progress.setValue(0)
            self.plot.clear()
            self.log.clear()
            self.log.setVisible(False)
            self.status.setText(f"Training {plugin}: preparing data…")

    def show_event(self, event: ev.Event) -> None:
        """Update progress, status and plot from one event of the training child."""
        if isinstance(event, ev.TrainStart):
            text = f"Training on {event.train_images} images ({event.validation_images} for validation)"
            if event.skipped:
                text += "; skipped: " + ", ".join(f"{n} {why}" for why, n in event.skipped.items())
            if event.messages:
                text += "\n" + "\n".join(event.messages)
            self.status.setText(text)
        elif isinstance(event, ev.TrainEvaluating):
            self.status.setText(f"Measuring the new model on {event.validation_images} validation images…")
        elif isinstance(event, ev.TrainRefit):
            n = event.validation_images
            self.status.setText(f"Folding in the {n} validation image{'' if n == 1 else 's'}…")
        elif isinstance(event, ev.TrainDone):  # every run ends with its validation point, however short it was
            if event.metric is not None and not self.plot.metric_series.points:
                self.plot.add_metric(self._last_x, event.metric)
        elif isinstance(event, ev.TrainProgress):
            self._show_progress(event)

    def _show_progress(self, event: ev.TrainProgress) -> None:
        fraction = event.done_fraction
        if fraction is not None:
            self.progress.setValue(round(fraction * 1000))
        refit = event.phase == "refit"
        x = float(event.step)
        self._last_x = max(self._last_x, x)  # steps run on through the refit (the runner offsets them)
        if refit:
            self.plot.mark_refit(x)
        loss = event.loss
        if loss is not None:
            self.plot.add_loss(x, loss)
        if event.metric is not None:
            self.plot.add_metric(x, event.metric)
        parts = ["folding in the validation images"] if refit else []
        if event.epoch is not None:  # the refit's epochs are its own
            parts.append(f"{'refit ' if refit else ''}epoch {event.epoch:.1f}")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if event.metric is not None:
            parts.append(f"val {event.metric:.3f}")
        if event.eta is not None:
            parts.append(ev.format_eta(event.eta))
        self.status.setText(" · ".join(parts))

    def show_finished(self, ok: bool, message: str, tail: str) -> None:
        self.set_running(False)
        self.progress.setValue(1000 if ok else 0)
        self.status.setText(message)
        if not ok and tail:
            self.log.setVisible(True)
            self.log.setPlainText(tail)
            self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())
