"""The ``labeler`` command line.

Each verb lives in its own module under :mod:`labeler.cli` with ``add_parser(subparsers)`` and a
``run(args) -> int``; heavy imports (torch, Qt) happen inside ``run`` so ``--help`` and start-up
stay fast. ``labeler`` with no verb, or with a path, opens the window.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# verb -> module under labeler.cli that implements it
VERBS: dict[str, str] = {
    "init": "project",
    "info": "project",
    "add": "project",
    "import": "transfer",
    "export": "transfer",
    "plugins": "learning",
    "train": "learning",
    "auto-label": "learning",
    "eval": "learning",
    "models": "learning",
    "demo": "demo",
    "access": "access",
}


class CliError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input, not our bug: one line, no traceback."""
    from labeler.core.images import ImageError
    from labeler.core.schema import SchemaError
    from labeler.core.store import ProjectError
    from labeler.learning.api import PluginError

    errors: list[type[BaseException]] = [
        CliError,
        ProjectError,
        ImageError,
        SchemaError,
        PluginError,
        FileNotFoundError,
    ]
    try:
        from labeler.formats.errors import FormatError

        errors.append(FormatError)
    except ImportError:
        pass
    return tuple(errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labeler",
        description="Label images with small CNNs that learn from your labels. "
        "Run 'labeler PATH' to open a project or folder in the window, or a verb below.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    seen: set[str] = set()
    for module_name in dict.fromkeys(VERBS.values()):
        module = importlib.import_module(f"labeler.cli.{module_name}")
        module.add_parsers(sub)
        seen.add(module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in VERBS and argv[0] not in ("-h", "--help")):
        from labeler.cli import window

        return window.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("labeler: interrupted; the project is as it was before this command", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        print(f"labeler {args.verb}: error: {exc}", file=sys.stderr)
        return 2
