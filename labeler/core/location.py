"""Where a project is, as the front ends name it: a folder, or a PostgreSQL URL plus this
machine's image root.

- :func:`location_name` is how a project is shown and remembered (recent projects, per-project
  settings): its folder, or its URL without any password, so that nothing written to settings or
  shown on screen holds one.
- :func:`child_project` is what a ``labeler`` child process (training, auto-labelling) needs to
  open the same project: the folder; or the URL without its password, ``--image-root`` and, when
  the URL carried a password, ``PGPASSWORD`` in the child's environment (libpq reads it there),
  because a command line can be read by every user of the machine and ends up in logs.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    from labeler.core.store import Project


@dataclass(frozen=True)
class ChildProject:
    """How a child process names a project: ``argument`` (where a verb takes its project),
    ``options`` (after the verb's own words) and ``env`` (added to its environment)."""

    argument: str
    options: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password (in the user part or as a ``password=`` parameter), and the
    password (``None`` when it has none)."""
    parts = urlsplit(url)
    password: str | None = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, secret = userinfo.partition(":")
        if sep:
            password = unquote(secret)
            netloc = f"{user}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k != "password"]
    if len(kept) != len(query):
        password = next(v for k, v in query if k == "password")
    if password is None:
        return url, None
    query_text = urlencode(kept, quote_via=quote)
    clean = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query_text}" if query_text else "")
    return clean + (f"#{parts.fragment}" if parts.fragment else ""), password


def location_name(project: Project) -> str:
    """The project's folder, or its URL without any password."""
    if project.url is None:
        return str(project.root)
    return split_password(project.url)[0]


def child_project(project: Project) -> ChildProject:
    """What a ``labeler`` child needs to open ``project`` (see the module docstring)."""
    if project.url is None:
        return ChildProject(str(project.root))
    url, password = split_password(project.url)
    env = {"PGPASSWORD": password} if password is not None else {}
    return ChildProject(url, ("--image-root", str(project.root)), env)


def command_line_name(project: Project) -> str:
    """How a ``labeler`` command line the user is told to run names ``project`` (after the verb):
    its folder, or its URL without the password and ``--image-root`` (shell-quoted)."""
    child = child_project(project)
    return shlex.join([child.argument, *child.options])
