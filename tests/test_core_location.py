"""Where a project is, as the front ends name it (labeler.core.location): no password leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeler.core.location import child_project, location_name, split_password
from labeler.core.store import Project


@pytest.mark.parametrize(
    ("url", "clean", "password"),
    [
        ("postgresql://ann:s3cret@db.lab:5433/cells", "postgresql://ann@db.lab:5433/cells", "s3cret"),
        ("postgresql://ann:p%40ss%3Aw@db/cells", "postgresql://ann@db/cells", "p@ss:w"),
        ("postgresql://db/cells?password=xyz&sslmode=require", "postgresql://db/cells?sslmode=require", "xyz"),
        ("postgresql://ann@db/cells", "postgresql://ann@db/cells", None),
        ("postgresql:///cells?service=lab", "postgresql:///cells?service=lab", None),
    ],
)
def test_split_password_takes_the_password_out_of_a_url(url: str, clean: str, password: str | None) -> None:
    assert split_password(url) == (clean, password)


def test_a_folder_project_is_named_by_its_folder_for_children_too(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as project:
        assert location_name(project) == str(project.root)
        child = child_project(project)
        assert (child.argument, child.options, dict(child.env)) == (str(project.root), (), {})


def test_a_database_project_gives_children_its_url_without_the_password(pg_url: str, tmp_path: Path) -> None:
    user, rest = pg_url.removeprefix("postgresql://").split("@", 1)
    with_password = f"postgresql://{user}:s3cret@{rest}"  # the test server trusts local users
    (tmp_path / "img").mkdir()
    Project.create(pg_url, image_root=tmp_path / "img").close()
    with Project.open(with_password, image_root=tmp_path / "img") as project:
        assert location_name(project) == pg_url
        child = child_project(project)
        assert child.argument == pg_url and "s3cret" not in " ".join([child.argument, *child.options])
        assert child.options == ("--image-root", str((tmp_path / "img").resolve()))
        assert dict(child.env) == {"PGPASSWORD": "s3cret"}
