"""``labeler demo [--headless] [--out DIR] [--budget SECONDS]``: the whole loop on generated scenes.

Makes a small project of synthetic scenes with known labels (:mod:`labeler.demo`), the first 60 %
labelled and done. With a display it opens the window on it; without one (or with
``--headless``) it trains both plugins briefly, auto-labels the rest and prints how the proposals
compare with the generated ground truth.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="try the loop on a generated project (window, or headless with figures)",
        description="Generate a small project of synthetic scenes (a disc, square or triangle on a noisy "
        "background; exact labels known), the first 60% labelled and done. With a display, open it in the "
        "window; without one, or with --headless, train the segmenter and the localizer briefly, auto-label "
        "the other images and print how their proposals compare with the ground truth.",
    )
    p.add_argument("--headless", action="store_true", help="run the loop in the terminal even if there is a display")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to make the project (a new or empty folder; default: a fresh temporary folder)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="training time per plugin in seconds (default: 25)",
    )
    p.add_argument("--images", type=int, default=60, metavar="N", help="how many scenes to generate (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene generator (default: 0)")
    p.set_defaults(run=run_demo)


def has_display() -> bool:
    """Whether a window can be shown: Qt's offscreen platform never; on Linux and other X11/Wayland
    systems only with ``$DISPLAY`` or ``$WAYLAND_DISPLAY``; on macOS and Windows always."""
    if os.environ.get("QT_QPA_PLATFORM", "").strip().lower() == "offscreen":
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(args: argparse.Namespace) -> int:
    from labeler.cli import CliError

    if args.budget <= 0:
        raise CliError(f"--budget must be a positive number of seconds, not {args.budget:g}")
    if not 2 <= args.images <= 10_000:
        raise CliError(f"--images must lie between 2 and 10000, not {args.images}")

    from labeler.demo.project import build_demo_project

    demo = build_demo_project(args.out, count=args.images, seed=args.seed)
    print(f"demo project: {demo.root}")
    print(
        f"  {len(demo.labelled) + len(demo.unlabelled)} scenes (disc, square, triangle), "
        f"{len(demo.labelled)} labelled and done, {len(demo.unlabelled)} left to auto-label"
    )
    sys.stdout.flush()

    if not args.headless and has_display():
        try:
            from labeler.gui.app import run_app
        except ImportError as exc:
            print(
                f"labeler demo: cannot open the window ({exc}); running the loop here instead "
                "(use --headless to skip this attempt)",
                file=sys.stderr,
            )
        else:
            return int(run_app(path=str(demo.root), screenshot=None) or 0)

    from labeler.demo.loop import report, run_loop

    # The demo's networks are tiny: more torch threads gain little, and on a shared CPU they
    # spin-wait on each other (measured: 7 instead of ~170 steps in 25 s on 2 busy cores).
    os.environ.setdefault("LABELER_THREADS", "1")

    def say(line: str) -> None:
        print(line, flush=True)

    result = run_loop(demo, budget=args.budget, say=say, seed=args.seed)
    print()
    for line in report(result):
        print(line)
    print(f"\nopen it in the window with: labeler {demo.root}")
    return 0
