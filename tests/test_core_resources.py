"""The app's data files (resources/, installed as labeler.resources), read without Qt."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from fnmatch import fnmatch
from pathlib import Path

import pytest

from labeler.core.resources import (
    APP_ICON,
    ResourceError,
    class_palette,
    command_table,
    icon_names,
    parse_command_table,
    resource,
)
from labeler.core.store import Project

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"


def test_new_categories_take_their_colours_from_the_palette_file(tmp_path: Path) -> None:
    palette = class_palette()
    assert len(palette) >= 10 and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette)
    with Project.create(tmp_path / "p") as project:
        colors = [project.add_category(f"c{i}").color for i in range(len(palette) + 1)]
    assert tuple(colors[: len(palette)]) == palette
    assert colors[-1] == palette[0]  # then again from the start


def test_the_command_table_is_well_formed() -> None:
    table = command_table()
    ids = [c.id for c in table.commands]
    assert len(ids) == len(set(ids)) and "mark_done" in ids
    keys = [k.lower() for c in table.commands for k in c.keys]
    assert len(keys) == len(set(keys))  # no key does two things
    for spec in table.commands:
        if spec.icon is not None:
            assert spec.icon in icon_names(), spec.id
    assert any(k.keys == "[ / ]" for k in table.canvas_keys)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[[action]]\nid = "a"\ntext = "A"\nkeys = ["X"]\n[[action]]\nid = "b"\ntext = "B"\nkeys = ["x"]\n',
            "given to 'a' and 'b'",
        ),
        ('[[action]]\nid = "a"\ntext = "A"\ncolour = "red"\n', "unknown fields ['colour']"),
        ('[[action]]\nid = "a"\n', "needs a non-empty text 'text'"),
        ('[[action]]\nid = "a"\ntext = "A"\n[[action]]\nid = "a"\ntext = "B"\n', "used twice"),
        ("[[action]\n", "not valid TOML"),
    ],
)
def test_a_broken_command_table_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ResourceError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_command_table(text)


def test_the_readme_names_the_keys_of_the_table() -> None:
    """The README's key list (the loop) agrees with the table: each single key it gives a tool or
    a step is that command's key there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = command_table()
    for command_id, phrase in (
        ("tool_box", "`B` box"),
        ("tool_polygon", "`P` polygon"),
        ("tool_brush", "`R` brush"),
        ("tool_eraser", "`E` eraser"),
        ("tool_select", "`V` select"),
        ("tool_assist", "`G` **box to mask**"),
        ("tool_outline", "`O` **snapping outline**"),
        ("mark_done", "(`M`)"),
        ("train", "(Ctrl+T)"),
        ("autolabel_image", "(Ctrl+L)"),
        ("accept_selected", "(`Y`)"),
        ("reject_selected", "(`X`)"),
        ("next_uncertain", "`U` goes"),
        ("next_undone", "`N` to the next"),
        ("rescan", "(F5)"),
        ("shortcuts", "F1 lists"),
    ):
        key = table[command_id].keys[0]
        assert phrase in readme, phrase
        assert key in phrase, (command_id, key, phrase)


def test_every_resource_file_is_shipped_in_the_wheel() -> None:
    """setup.py maps resources/ to labeler.resources; pyproject's package data must name every file."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["labeler.resources"]
    files = [
        p.relative_to(RESOURCES).as_posix()
        for p in RESOURCES.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"
    ]
    assert files
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), name
    assert '"labeler.resources"' in (ROOT / "setup.py").read_text(encoding="utf-8")


def test_the_desktop_entry_starts_labeler_with_its_icon() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(resource("labeler.desktop").read_text(encoding="utf-8"))
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "labeler"
    assert entry["Exec"].split()[0] == "labeler" and entry["Terminal"] == "false"
    assert entry["Icon"] == APP_ICON and APP_ICON in icon_names()
    assert entry["Categories"].endswith(";") and "Graphics" in entry["Categories"].split(";")


def test_the_appstream_metadata_names_the_app_and_its_desktop_entry() -> None:
    files = [p for p in RESOURCES.iterdir() if p.name.endswith(".metainfo.xml")]
    assert len(files) == 1
    component = ET.parse(files[0]).getroot()
    assert component.tag == "component" and component.get("type") == "desktop-application"
    assert files[0].name == f"{component.findtext('id')}.metainfo.xml"
    assert component.findtext("metadata_license") == "CC0-1.0"
    assert component.findtext("launchable") == "labeler.desktop"
    assert component.findtext("provides/binary") == "labeler"
    assert (component.findtext("summary") or "").strip() and component.find("description/p") is not None
    if shutil.which("appstreamcli") is None:
        pytest.skip("appstreamcli is not installed: the spec check did not run")
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", "--pedantic", str(files[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_editable_install_from_before_resources_existed_reads_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Such an install maps only ``labeler``, so ``labeler.resources`` cannot be imported; the
    checkout's resources/ is read instead of failing at the store's import."""
    import labeler.core.resources as module

    monkeypatch.setattr(module, "PACKAGE", "labeler.not_installed_resources")
    assert module.read_bytes("palette.json") == (RESOURCES / "palette.json").read_bytes()
    assert "tool-box" in module.icon_names()
