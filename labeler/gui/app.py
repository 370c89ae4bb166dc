"""Start the desktop app: ``labeler [PATH] [--screenshot FILE]``.

``run_app`` creates the ``QApplication`` and the main window, opens ``PATH`` (a project, or a
folder of images that becomes a project: asked when interactive, done silently with
``--screenshot``), and either runs the event loop or renders the window to a PNG and exits.
torch is never imported here: the learning engine loads only when a model is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer, SignalInstance
from PySide6.QtWidgets import QApplication, QWidget

from labeler.core.pg import is_database_url, redact

SCREENSHOT_TIMEOUT_MS = 15_000


def application() -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("labeler")
        app.setOrganizationName("labeler")
        app.setDesktopFileName("labeler")  # resources/labeler.desktop: the desktop shows its name and icon
        from labeler.gui.icons import app_icon

        app.setWindowIcon(app_icon())  # every window and dialog of the app
    assert isinstance(app, QApplication)
    return app


def wait_for(signal: SignalInstance, timeout_ms: int, *, unless: SignalInstance | None = None) -> bool:
    """Run the event loop until ``signal`` fires or ``timeout_ms`` passes; True if it fired.
    ``unless``, a second signal, ends the wait too (returning False)."""
    loop = QEventLoop()
    fired: list[bool] = []

    def done(*_args: object) -> None:
        fired.append(True)
        loop.quit()

    def stop(*_args: object) -> None:
        loop.quit()

    signal.connect(done)
    if unless is not None:
        unless.connect(stop)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(done)
    if unless is not None:
        unless.disconnect(stop)
    return bool(fired)


def save_screenshot(window: QWidget, path: str | Path) -> None:
    """Grab the window's pixels into a PNG (raises OSError when the file cannot be written)."""
    app = application()
    for _ in range(3):
        app.processEvents()
    pixmap = window.grab()
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write the screenshot {path}")


def run_app(*, path: str | None, screenshot: str | None, image_root: str | None = None) -> int:
    """Open the window (on ``path`` if given: a folder, or a ``postgresql://`` URL whose images
    are under ``image_root``). With ``screenshot``: render, save the PNG, exit 0."""
    app = application()
    from labeler.gui.main_window import MainWindow

    window = MainWindow(interactive=screenshot is None)
    window.show()
    if path is not None:
        target: str | Path = path if is_database_url(path) else Path(path).expanduser()
        if isinstance(target, Path) and not target.exists():
            print(f"labeler: error: {target}: no such file or folder", file=sys.stderr)
            if screenshot is not None:
                window.shutdown()
                return 2
        else:
            opened_signal = window.projectOpened
            started = window.open_path(target, image_root=image_root)
            if screenshot is not None:
                if not started:
                    print(f"labeler: error: cannot open {redact(str(target))}", file=sys.stderr)
                    window.shutdown()
                    return 2
                if window.project is None:
                    wait_for(opened_signal, SCREENSHOT_TIMEOUT_MS)
                current = window.canvas.current_image_id()
                if (
                    current is not None
                    and window.canvas.image_resolution() is None
                    and not window.canvas.failure_text()
                ):
                    # an image that cannot be read ends the wait at once (its reason is drawn instead)
                    wait_for(window.canvas.imageShown, SCREENSHOT_TIMEOUT_MS, unless=window.canvas.errorOccurred)
                if current is not None and not window.canvas.image_complete() and not window.canvas.failure_text():
                    wait_for(window.canvas.imageComplete, SCREENSHOT_TIMEOUT_MS, unless=window.canvas.errorOccurred)
                if window.canvas.failure_text():
                    print(f"labeler: {window.canvas.failure_text().splitlines()[-1]}", file=sys.stderr)
                window.images.model.wait_for_thumbnails(SCREENSHOT_TIMEOUT_MS)
    if screenshot is not None:
        try:
            save_screenshot(window, screenshot)
        except OSError as exc:
            print(f"labeler: error: {exc}", file=sys.stderr)
            window.shutdown()
            return 2
        window.shutdown()
        print(screenshot)
        return 0
    return int(app.exec())
