"""``labeler [PATH | postgresql://… --image-root DIR] [--screenshot FILE]``: open the desktop window."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from labeler.cli.where import add_image_root, image_root


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="labeler", description="Open the labeler window on a project or folder.")
    parser.add_argument(
        "path", nargs="?", help="a project folder, a folder of images, or a postgresql:// URL of a shared project"
    )
    add_image_root(parser)
    parser.add_argument("--screenshot", metavar="FILE", help="render the window to a PNG file and exit")
    args = parser.parse_args(argv)
    try:
        from labeler.gui.app import run_app
    except ImportError as exc:
        print(f"labeler: error: the window needs PySide6 ({exc})", file=sys.stderr)
        return 2
    return run_app(path=args.path, screenshot=args.screenshot, image_root=image_root(args))
