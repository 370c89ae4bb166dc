"""Which model plugins are installed, read from their entry points' metadata without importing
them (so without torch): what the window lists before any plugin is loaded. Loading them is
:mod:`labeler.learning.plugins`."""

from __future__ import annotations

import importlib.metadata

from labeler.learning.api import ENTRY_POINT_GROUP


def installed_plugins() -> list[str]:
    """Names of the installed model plugins, sorted."""
    return sorted({e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def plugin_descriptions() -> dict[str, str]:
    """Each installed plugin's one-line description (its package's summary, else its entry point)."""
    out: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        summary = entry.dist.metadata.json.get("summary") if entry.dist is not None else None
        out[entry.name] = str(summary) if summary else entry.value
    return out
