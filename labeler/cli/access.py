"""``labeler access``: who may do what in a team's project (PostgreSQL roles)."""

from __future__ import annotations

import argparse
from typing import Any

from labeler.cli.where import add_image_root, open_project

_WHAT = {
    "creator": "everything (made the tables)",
    "owner": "everything",
    "annotator": "labels, done state, proposals, categories (not deleting one), the edit log",
    "reviewer": "reads only",
}


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "access",
        help="list, grant or revoke rights on a team's project (PostgreSQL)",
        description="With no action, list who holds which right on the project. 'grant ROLE RIGHT' gives an "
        "existing database role the right owner, annotator or reviewer (and no other right of this project); "
        "'revoke ROLE' takes its right away. The database enforces the rights.",
    )
    p.add_argument("project", help="a postgresql://HOST/DB project (roles need PostgreSQL)")
    add_image_root(p)
    p.add_argument("action", nargs="?", choices=("grant", "revoke"), help="grant or revoke (default: list)")
    p.add_argument("role", nargs="?", help="the database role (user) to grant to or revoke from")
    p.add_argument("right", nargs="?", help="owner, annotator or reviewer (for grant)")
    p.set_defaults(run=run_access)


def run_access(args: argparse.Namespace) -> int:
    from labeler.cli import CliError
    from labeler.core import access
    from labeler.core.pg import is_database_url

    if not is_database_url(args.project):
        raise CliError(
            f"{args.project}: roles need a project in PostgreSQL (postgresql://HOST/DB); "
            "a project folder on SQLite has no users to give rights to"
        )
    if args.action is not None and not args.role:
        raise CliError(
            f"{args.action} needs the database role to {args.action} (labeler access PROJECT {args.action} ROLE)"
        )
    if args.action == "grant" and args.right not in access.RIGHTS:
        raise CliError(f"grant needs a right: owner, annotator or reviewer (not {args.right!r})")
    if args.action == "revoke" and args.right is not None:
        raise CliError("revoke takes the role alone: it takes away whatever right the role holds")
    if args.action is None and args.role is not None:
        raise CliError(f"{args.role!r}: say grant or revoke before the role")
    with open_project(args) as project:
        try:
            if args.action == "grant":
                access.grant(project, args.role, args.right)
                print(f"{args.role} is now {args.right} of the project")
            elif args.action == "revoke":
                held = access.revoke(project, args.role)
                print(f"{args.role}: {', '.join(held) + ' revoked' if held else 'held no right of this project'}")
            else:
                holders = access.holders(project)
                for holder in holders:
                    print(f"{holder.right:<10} {holder.user:<24} {_WHAT[holder.right]}")
                if not any(h.right in access.RIGHTS for h in holders):
                    print("(no one else holds a right yet: labeler access PROJECT grant ROLE owner|annotator|reviewer)")
        except access.AccessSetupError as exc:
            raise CliError(str(exc)) from None
        except Exception as exc:
            from labeler.core.pg import privilege_errors, redact

            if isinstance(exc, privilege_errors()):
                raise CliError(
                    f"{project.author} may not change the rights here (needs CREATEROLE, or the owner "
                    f"right with admin option): {' '.join(redact(str(exc)).split())}"
                ) from None
            raise
    return 0
