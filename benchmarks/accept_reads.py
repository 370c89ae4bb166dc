"""Database statements behind one "accept proposal" click, in the real window.

Counts the SELECTs and the writes (INSERT/UPDATE/DELETE) the project's connection runs while one
proposal is accepted by the Y key with the pointer over it: first inside the undo command alone,
then for the whole click (the canvas, the panels and the status bar re-reading what they show).
Prints the counts; run ``QT_QPA_PLATFORM=offscreen python benchmarks/accept_reads.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    from gui_helpers import make_project
    from PySide6.QtTest import QSignalSpy
    from PySide6.QtWidgets import QApplication

    from labeler.core.annotation import Annotation, Kind, State
    from labeler.core.store import ModelVersion
    from labeler.gui.controllers import undo as commands
    from labeler.gui.main_window import MainWindow
    from labeler.gui.settings import AppSettings

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LABELER_SETTINGS"] = str(Path(tmp) / "settings.ini")
        project = make_project(Path(tmp), images=2)
        version = project.add_model_version(
            ModelVersion(id=None, plugin="localizer", checkpoint="x", categories=(1,), settings={})
        )
        for i in range(3):
            project.add_annotation(
                Annotation(
                    image_id=1,
                    category_id=1,
                    kind=Kind.BOX,
                    box_xywh=(10.0 + 40 * i, 10.0, 30.0, 30.0),
                    state=State.PROPOSED,
                    model_version=version.id,
                    score=0.9,
                )
            )
        root = project.root
        project.close()
        window = MainWindow(AppSettings(), interactive=False)
        window.show()
        spy = QSignalSpy(window.canvas.imageShown)
        window.open_path(root)
        while spy.count() == 0:
            app.processEvents()
        project = window.project
        assert project is not None
        statements: list[str] = []
        project._conn.set_trace_callback(statements.append)

        def counts() -> str:
            reads = sum(s.lstrip().upper().startswith("SELECT") for s in statements)
            writes = sum(s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) for s in statements)
            return f"{reads} reads, {writes} writes"

        proposal = project.annotations(1, states=[State.PROPOSED])[0]
        command = commands.set_states(project, [proposal], State.ACCEPTED)
        statements.clear()
        command.redo()
        print(f"accept, the undo command alone: {counts()}")
        statements.clear()
        command.undo()
        print(f"undo of that accept: {counts()}")
        proposal = project.annotations(1, states=[State.PROPOSED])[1]
        statements.clear()
        window.canvas.accept([proposal.id])
        app.processEvents()
        print(f"accept, the whole click (canvas, panels, status bar): {counts()}")
        project._conn.set_trace_callback(None)
        window.shutdown()
        window.set_project(None)


if __name__ == "__main__":
    main()
