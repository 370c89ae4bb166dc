"""The rule that refuses to train a model version on too few of the images the user labelled.

A plugin may skip images it cannot learn from (the localizer takes images with exactly one box).
Training goes on only if the plugin can use at least :data:`MIN_USABLE_SHARE` of the done
images (and at least one for training proper); below that the version would mostly reflect what was left out, so no
version is made (and none becomes active) and the message says what was skipped, why, and which
plugin fits such labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_NUMBER = re.compile(r"\d+")

MIN_USABLE_SHARE = 0.25
"""Least share of the training images a plugin must be able to use for training to go on."""

FITTING_PLUGIN: Mapping[str, tuple[str, str]] = {
    "localization": ("detector", "many objects per image"),
}
"""For a plugin's task: the plugin that fits the labels it skips, and what it is for."""


def min_usable_images(total: int) -> int:
    """The fewest usable training images out of ``total`` with which training goes on."""
    return max(1, math.ceil(MIN_USABLE_SHARE * total))


def skipped_summary(skipped: Mapping[str, int], *, most: int = 3) -> str:
    """``"287 skipped: 280 with N accepted labels; ...; 7 no accepted box label"``: reasons that
    differ only in their numbers are counted together (shown with ``N``), the ``most`` frequent first."""
    if not skipped:
        return "none skipped"
    total = sum(skipped.values())
    grouped: dict[str, int] = {}
    variants: dict[str, list[str]] = {}
    for reason, n in skipped.items():
        key = _NUMBER.sub("N", reason)
        grouped[key] = grouped.get(key, 0) + n
        variants.setdefault(key, []).append(reason)
    ranked = sorted(grouped.items(), key=lambda kv: -kv[1])
    shown = [f"{n} × {variants[key][0] if len(variants[key]) == 1 else key}" for key, n in ranked[:most]]
    if len(ranked) > most:
        shown.append(f"{sum(n for _, n in ranked[most:])} for other reasons")
    return f"{total} skipped: " + "; ".join(shown)


def refusal(*, plugin: str, task: str, usable: int, total: int, skipped: Mapping[str, int]) -> str | None:
    """Why training must not go on (one line), or ``None`` if ``usable`` of ``total`` images suffice."""
    if usable >= min_usable_images(total):
        return None
    message = (
        f"plugin {plugin!r} can use only {usable} of the {total} done images "
        f"({skipped_summary(skipped)}); no version trained"
    )
    fitting = FITTING_PLUGIN.get(task)
    if fitting is not None and fitting[0] != plugin:
        message += f"; for {fitting[1]} use the {fitting[0]!r} plugin"
    return message
