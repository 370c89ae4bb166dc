"""Discovery: plugins come from the entry-point group only; a broken one does not hide the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from learning_support import install_minimal_plugin

from labeler.learning.api import PluginError
from labeler.learning.plugins import discover, get_plugin, load_errors


def _fake_distribution(root: Path, name: str, entry_points: str, module: str | None = None) -> None:
    """A hand-made installed distribution (dist-info with METADATA and entry_points.txt)."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[labeler.plugins]\n{entry_points}\n")
    if module is not None:
        (root / f"{name}.py").write_text(module)


def test_installed_example_plugin_is_discovered():
    target = install_minimal_plugin()
    assert any(p.name.endswith(".dist-info") for p in target.iterdir())
    plugins = discover()
    assert "minimal" in plugins
    plugin = plugins["minimal"]
    assert plugin.task == "segmentation" and plugin.metric == "miou"
    assert get_plugin("minimal").name == "minimal"


def test_broken_plugins_are_reported_by_name_without_hiding_others(tmp_path, monkeypatch):
    install_minimal_plugin()
    _fake_distribution(tmp_path, "labeler_missing", "ghost = labeler_no_such_module:Plugin")
    _fake_distribution(
        tmp_path,
        "labeler_raises",
        "raiser = labeler_raises:make",
        module="def make():\n    raise RuntimeError('cannot start')\n",
    )
    _fake_distribution(
        tmp_path,
        "labeler_misnamed",
        "alias = labeler_misnamed:P",
        module=(
            "class P:\n    name = 'other'\n    task = 'segmentation'\n    metric = 'm'\n"
            "    settings = ()\n"
            + "".join(
                f"    def {m}(self): pass\n"
                for m in ("build_model", "prepare", "example", "losses", "inputs", "proposals", "evaluate")
            )
        ),
    )
    _fake_distribution(
        tmp_path, "labeler_partial", "partial = labeler_partial:P", module="class P:\n    name = 'partial'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = discover()
    assert "minimal" in plugins
    assert not {"ghost", "raiser", "alias", "partial"} & set(plugins)
    errors = {e.name: e.reason for e in load_errors()}
    assert "ModuleNotFoundError" in errors["ghost"]
    assert "cannot start" in errors["raiser"]
    assert "differs from the entry point's name 'alias'" in errors["alias"]
    assert "has no 'task'" in errors["partial"]
    with pytest.raises(PluginError, match=r"'raiser'.*could not be loaded.*cannot start"):
        get_plugin("raiser")
    with pytest.raises(PluginError, match=r"not installed.*minimal"):
        get_plugin("nonesuch")


def test_a_module_on_the_path_without_an_entry_point_is_not_a_plugin(tmp_path, monkeypatch):
    (tmp_path / "labeler_loose.py").write_text("class Loose:\n    name = 'loose'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "loose" not in discover()
    assert "labeler_loose" not in sys.modules
