"""Placeholder registration; replaced by the module's owner."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    return None
