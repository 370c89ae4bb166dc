"""The layering of DESIGN.md holds: Qt only in labeler.gui, torch never in core or formats, and the
command line starts without torch or Qt."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "labeler"
QT_FREE = ("labeler.core", "labeler.formats", "labeler.learning", "labeler.assist")
FORBIDDEN_IN_CORE = ("torch", "PySide6", "shiboken6", "PyQt5", "PyQt6")


def _run(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _modules_of(package: str) -> list[str]:
    folder = REPO / package.replace(".", "/")
    names = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_qt_free_module_imports_without_pyside6() -> None:
    modules = [m for pkg in QT_FREE for m in _modules_of(pkg)]
    assert "labeler.core.store" in modules and "labeler.learning.api" in modules
    result = _run(
        "import importlib, json, sys\n"
        f"mods = {modules!r}\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps({'qt': sorted(k for k in sys.modules if k.split('.')[0] in ('PySide6', 'shiboken6'))}))\n"
    )
    assert "labeler.assist.grabcut" in modules
    assert result["qt"] == [], f"importing core/formats/learning/assist pulled in Qt: {result['qt']}"


def test_core_and_formats_import_without_torch() -> None:
    modules = [m for pkg in ("labeler.core", "labeler.formats") for m in _modules_of(pkg)]
    result = _run(
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules}))\n"
    )
    assert result["torch"] is False


def test_cli_start_up_stays_light() -> None:
    result = _run(
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "import labeler.cli\n"
        "parser = labeler.cli.build_parser()\n"
        "dt = time.perf_counter() - t\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'PySide6', 'shiboken6'))\n"
        "print(json.dumps({'heavy': heavy, 'seconds': dt, 'verbs': sorted(parser._subparsers._group_actions[0].choices)}))\n"
    )
    assert result["heavy"] == [], f"'labeler --help' imports {result['heavy'][:5]}"
    assert {"init", "info", "demo"} <= set(result["verbs"])


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement in ``path`` names (at any depth, lazily or not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


@pytest.mark.parametrize("package", ["core", "formats", "assist"])
def test_static_no_torch_or_qt_in_core_and_formats(package: str) -> None:
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert files
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in files
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN_IN_CORE
    ]
    assert not offenders, "\n".join(offenders)


def test_static_qt_only_in_gui() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "gui" not in path.relative_to(PACKAGE).parts
        for line, name in _imports(path)
        if name.split(".")[0] in ("PySide6", "shiboken6", "PyQt5", "PyQt6")
    ]
    assert not offenders, "\n".join(offenders)


def test_static_checker_sees_lazy_imports(tmp_path: Path) -> None:
    """The checker itself finds imports hidden inside functions and importlib calls."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    import torch.nn as nn\n    from PySide6 import QtCore\n    importlib.import_module('torch')\n"
    )
    assert [name for _, name in _imports(sample)] == ["torch.nn", "PySide6", "torch"]
