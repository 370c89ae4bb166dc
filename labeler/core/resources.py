"""The app's data files (top-level ``resources/``, installed as the package ``labeler.resources``).

Read through :mod:`importlib.resources`, so they are found in a wheel, an editable install or a
zip alike. No Qt here: the class palette is used by the store, and the command table is plain data
that the window turns into actions (:mod:`labeler.gui.actions`) and that tests check against the
README.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

RGB = tuple[int, int, int]
PACKAGE = "labeler.resources"
ICON_DIR = "icons"
APP_ICON = "labeler"
"""The app icon's name in ``icons/`` (and the desktop entry's ``Icon=``)."""


class ResourceError(Exception):
    """A data file of the app is missing or malformed (a broken installation); the message says which."""


def _root() -> Traversable:
    try:
        return resources.files(PACKAGE)
    except ModuleNotFoundError:
        # An editable install made before resources/ existed does not map it: use the checkout's.
        checkout = Path(__file__).resolve().parents[2] / "resources"
        if checkout.is_dir():
            return checkout
        raise


def resource(name: str) -> Traversable:
    """The file ``name`` (a relative path such as ``"icons/tool-box.svg"``) in the resources."""
    path = _root()
    for part in name.split("/"):
        path = path.joinpath(part)
    return path


def read_bytes(name: str) -> bytes:
    try:
        return resource(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ResourceError(f"the app's data file {name!r} is missing from {PACKAGE} ({exc})") from exc


def icon_svg(name: str) -> bytes:
    """The SVG text of icon ``name`` (``icons/NAME.svg``)."""
    return read_bytes(f"{ICON_DIR}/{name}.svg")


def icon_names() -> list[str]:
    """Every icon in ``icons/``, by name (file name without ``.svg``), sorted."""
    try:
        files = list(resource(ICON_DIR).iterdir())
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ResourceError(f"the app's icons are missing from {PACKAGE} ({exc})") from exc
    return sorted(p.name.removesuffix(".svg") for p in files if p.name.endswith(".svg"))


def _hex_rgb(text: object) -> RGB:
    if not (isinstance(text, str) and len(text) == 7 and text.startswith("#")):
        raise ResourceError(f"palette.json: {text!r} is not a colour like '#1f77b4'")
    try:
        value = int(text[1:], 16)
    except ValueError as exc:
        raise ResourceError(f"palette.json: {text!r} is not a colour like '#1f77b4'") from exc
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


@cache
def class_palette() -> tuple[RGB, ...]:
    """The colours new classes get, in order (``palette.json``), as ``(r, g, b)`` 0-255."""
    try:
        colors = json.loads(read_bytes("palette.json"))["colors"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ResourceError(f"palette.json is malformed: {exc}") from exc
    if not isinstance(colors, list) or not colors:
        raise ResourceError("palette.json: 'colors' must be a non-empty list")
    return tuple(_hex_rgb(c) for c in colors)


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """One command of the window, as ``shortcuts.toml`` describes it.

    ``keys`` are in Qt's portable text (``"Ctrl+Shift+Z"``), the first the one menus show;
    ``icon`` names a file of ``icons/``; ``short`` is the tool bar's label."""

    id: str
    text: str
    keys: tuple[str, ...] = ()
    tip: str = ""
    icon: str | None = None
    short: str | None = None

    @property
    def plain_text(self) -> str:
        """The menu text without its mnemonic marks."""
        return self.text.replace("&", "")


@dataclass(frozen=True, kw_only=True)
class CanvasKey:
    """A key the canvas handles itself (no action of the window): what to press, what it does."""

    keys: str
    what: str


@dataclass(frozen=True, kw_only=True)
class CommandTable:
    commands: tuple[CommandSpec, ...]
    canvas_keys: tuple[CanvasKey, ...]

    def __getitem__(self, command_id: str) -> CommandSpec:
        for spec in self.commands:
            if spec.id == command_id:
                return spec
        raise KeyError(f"shortcuts.toml has no action {command_id!r}")


def _text(row: dict[str, object], key: str, where: str, *, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ResourceError(f"shortcuts.toml: {where} needs a non-empty text {key!r}")
    return value


def parse_command_table(text: str) -> CommandTable:
    """Read the command table from the text of a ``shortcuts.toml``; :class:`ResourceError` names
    the entry that is wrong (unknown field, missing text, a key given to two commands)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ResourceError(f"shortcuts.toml is not valid TOML: {exc}") from exc
    commands: list[CommandSpec] = []
    owner: dict[str, str] = {}
    for index, row in enumerate(data.get("action", [])):
        where = f"action {index + 1} ({row.get('id', '?')})"
        unknown = set(row) - {"id", "text", "keys", "tip", "icon", "short"}
        if unknown:
            raise ResourceError(f"shortcuts.toml: {where} has unknown fields {sorted(unknown)}")
        keys = row.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ResourceError(f"shortcuts.toml: {where}: 'keys' must be a list of key texts")
        spec = CommandSpec(
            id=str(_text(row, "id", where)),
            text=str(_text(row, "text", where)),
            keys=tuple(keys),
            tip=_text(row, "tip", where, required=False) or "",
            icon=_text(row, "icon", where, required=False),
            short=_text(row, "short", where, required=False),
        )
        if any(c.id == spec.id for c in commands):
            raise ResourceError(f"shortcuts.toml: {where}: the id {spec.id!r} is used twice")
        for key in spec.keys:
            if key.lower() in owner:
                other = owner[key.lower()]
                raise ResourceError(f"shortcuts.toml: the key {key!r} is given to {other!r} and {spec.id!r}")
            owner[key.lower()] = spec.id
        commands.append(spec)
    canvas = []
    for index, row in enumerate(data.get("canvas", [])):
        where = f"canvas key {index + 1}"
        canvas.append(CanvasKey(keys=str(_text(row, "keys", where)), what=str(_text(row, "what", where))))
    return CommandTable(commands=tuple(commands), canvas_keys=tuple(canvas))


@cache
def command_table() -> CommandTable:
    """The window's commands and keys, from ``shortcuts.toml``."""
    return parse_command_table(read_bytes("shortcuts.toml").decode("utf-8"))
