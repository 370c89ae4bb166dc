"""The status bar: images done / total and the time accepted proposals saved."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from labeler.core.effort import Effort, format_duration, project_effort
from labeler.core.store import Project


def effort_text(effort: Effort) -> str:
    """One line for the status bar, e.g. ``proposals saved ~12 min (34 accepted)``."""
    if not effort.accepted_total:
        return "no proposals accepted yet"
    verb = "saved" if effort.saved_seconds >= 0 else "cost"
    return f"proposals {verb} ~{format_duration(abs(effort.saved_seconds))} ({effort.accepted_total} accepted)"


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
        self.addPermanentWidget(self.saved_label)
        self.addPermanentWidget(self.done_label)
        self.refresh(None)

    def refresh(self, project: Project | None) -> None:
        """Re-read the counts (a few SQL aggregates; cheap enough for every edit)."""
        if project is None:
            self.done_label.setText("no project")
            self.saved_label.setText("")
            return
        total = project.image_count()
        done = project.image_count(done=True)
        self.done_label.setText(f"{done} / {total} images done")
        effort = project_effort(project)
        self.saved_label.setText(effort_text(effort))
        self.saved_label.setToolTip(effort_tooltip(effort))
