"""The status bar: images done / total and the time accepted proposals saved."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from labeler.core.effort import Effort, format_duration, project_effort
from labeler.core.store import Project


def effort_text(effort: Effort) -> str:
    """One plain line for the status bar, e.g. ``34 proposals accepted: ~12 min of drawing saved``."""
    if not effort.accepted_total:
        return "no proposals accepted yet"
    n = effort.accepted_total
    accepted = f"{n} proposal{'' if n == 1 else 's'} accepted"
    duration = format_duration(abs(effort.saved_seconds))
    if effort.saved_seconds >= 0:
        return f"{accepted}: ~{duration} of drawing saved"
    return f"{accepted}: reviewing took ~{duration} longer than drawing them would have"


def zoom_text(scale: float) -> str:
    """The zoom as the status bar shows it: ``"zoom 150 %"`` (screen pixels per image pixel x 100)."""
    return f"zoom {scale * 100:.0f} %" if scale > 0 else ""


def effort_tooltip(effort: Effort) -> str:
    lines = ["Hand-drawing time per label (median of your own, else a default):"]
    lines += [f"  {kind}: {seconds:.0f} s" for kind, seconds in sorted(effort.draw_seconds.items())]
    lines += [f"Accepted as proposed: {n} {kind}" for kind, n in sorted(effort.accepted.items())]
    lines.append(f"Time spent reviewing: {format_duration(effort.review_seconds)}")
    return "\n".join(lines)


class StatusBar(QStatusBar):
    """Permanent labels on the right; transient messages on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.done_label = QLabel()
        self.saved_label = QLabel()
        self.zoom_label = QLabel()
        self.zoom_label.setToolTip("Screen pixels per image pixel; Ctrl+0 fits the image, Ctrl+1 is 100 %")
        self.addPermanentWidget(self.zoom_label)
        self.addPermanentWidget(self.saved_label)
        self.addPermanentWidget(self.done_label)
        self.refresh(None)

    def show_zoom(self, scale: float) -> None:
        self.zoom_label.setText(zoom_text(scale))

    def refresh(self, project: Project | None) -> None:
        """Re-read the counts (a few SQL aggregates; cheap enough for every edit)."""
        if project is None:
            self.done_label.setText("no project")
            self.saved_label.setText("")
            self.zoom_label.setText("")
            return
        total = project.image_count()
        done = project.image_count(done=True)
        self.done_label.setText(f"{done} / {total} images done")
        effort = project_effort(project)
        self.saved_label.setText(effort_text(effort))
        self.saved_label.setToolTip(effort_tooltip(effort))
