"""Opening projects written by other schema versions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from labeler.core.annotation import Kind, State
from labeler.core.geometry import decode_rle, encode_mask
from labeler.core.schema import MIGRATIONS, SCHEMA_VERSION, SchemaError
from labeler.core.store import DB_NAME, Project, ProjectError
from labeler.core.uncertainty import uncertainty_order


def make_v1_project(root: Path) -> np.ndarray:
    """A project as labeler's first schema wrote it (no uncertainty, ignore region or edit log)."""
    root.mkdir(parents=True)
    con = sqlite3.connect(root / DB_NAME, isolation_level=None)
    con.executescript(MIGRATIONS[0])
    con.execute("PRAGMA user_version = 1")
    con.execute(
        "INSERT INTO images(id, path, width, height, content_hash, done, added) VALUES "
        "(1, 'images/a.png', 12, 8, 'abc', 1, 1.0), (2, 'images/b.png', NULL, NULL, NULL, 0, 2.0)"
    )
    con.execute("INSERT INTO categories(id, name, color) VALUES (1, 'cat', '#ff0000'), (3, 'dög', '#00ff00')")
    con.execute(
        "INSERT INTO model_versions(id, plugin, settings, categories, checkpoint, parent, metrics, data,"
        " created, active) VALUES (1, 'seg', '{\"arch\": \"naive\"}', '[1, 3]', 'models/1', NULL,"
        " '{\"miou\": 0.7}', '{}', 5.0, 1)"
    )
    mask = np.zeros((8, 12), dtype=bool)
    mask[2:6, 1:5] = True
    con.execute(
        "INSERT INTO annotations(id, image_id, category_id, kind, geometry, state, model_version, score,"
        " iscrowd, group_id, attributes, created, updated) VALUES"
        " (10, 1, 1, 'box', '[1, 2, 3, 4]', 'accepted', NULL, NULL, 0, NULL, '{}', 3.0, 3.0),"
        " (11, 1, 3, 'mask', ?, 'proposed', 1, 0.75, 0, NULL, '{}', 4.0, 4.0),"
        " (12, 2, 1, 'polygon', '[[0, 0, 4, 0, 4, 4]]', 'rejected', 1, 0.2, 0, 5, '{\"k\": 1}', 4.0, 4.0)",
        (json.dumps(encode_mask(mask)),),
    )
    con.close()
    return mask


def test_schema_1_project_migrates_with_data_intact(tmp_path: Path) -> None:
    mask = make_v1_project(tmp_path / "old")
    with Project.open(tmp_path / "old") as p:
        images = p.images()
        assert [(r.id, r.path, r.width, r.height, r.done, r.content_hash) for r in images] == [
            (1, "images/a.png", 12, 8, True, "abc"),
            (2, "images/b.png", None, None, False, None),
        ]
        assert all(r.uncertainty is None for r in images)
        assert [(c.id, c.name, c.color) for c in p.categories()] == [(1, "cat", (255, 0, 0)), (3, "dög", (0, 255, 0))]
        box, m, poly = p.annotations()
        assert (box.id, box.kind, box.box_xywh, box.state) == (10, Kind.BOX, (1, 2, 3, 4), State.ACCEPTED)
        assert m.kind is Kind.MASK and m.model_version == 1 and m.score == 0.75
        assert np.array_equal(decode_rle(m.rle or {}), mask)
        assert poly.state is State.REJECTED and poly.group_id == 5 and poly.attributes == {"k": 1}
        version = p.active_model_version("seg")
        assert version is not None and version.categories == (1, 3) and version.metrics == {"miou": 0.7}
        # the columns and tables of later versions work
        p.replace_proposals(2, plugin="test", proposals=[], uncertainty=0.5)
        p.set_ignore_mask(1, encode_mask(mask))
        p.log_edit("draw", image_id=1, seconds=2.0)
        assert [r.id for r in uncertainty_order(p.images())][:1] == [2]
        assert p.edit_log()[0]["seconds"] == 2.0
        # ids continue after the old ones
        assert p.add_category("new").id == 4
    con = sqlite3.connect(tmp_path / "old" / DB_NAME)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_each_migration_step_applies_to_the_previous(tmp_path: Path) -> None:
    """Every intermediate version opens (a chain with a gap would fail here)."""
    for start in range(SCHEMA_VERSION):
        root = tmp_path / f"v{start}"
        root.mkdir()
        con = sqlite3.connect(root / DB_NAME, isolation_level=None)
        for step in MIGRATIONS[:start]:
            con.executescript(step)
        con.execute(f"PRAGMA user_version = {start}")
        con.close()
        with Project.open(root) as p:
            p.add_category("x")
            assert p.categories()[0].name == "x"


def _sql(project: Project, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on the project's database through a connection of its own (committed)."""
    if project.url is None:
        con = sqlite3.connect(project.root / DB_NAME, isolation_level=None)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    import psycopg

    with psycopg.connect(project.url, autocommit=True) as con:
        cur = con.execute(sql)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


def _schema_version(project: Project) -> int:
    sql = "PRAGMA user_version" if project.url is None else "SELECT version FROM labeler_schema"
    return int(_sql(project, sql)[0][0])


def test_newer_schema_is_a_clear_schema_error(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    p = make_project(tmp_path / "p")
    p.add_category("x")
    newer = SCHEMA_VERSION + 5
    _sql(p, f"PRAGMA user_version = {newer}" if p.url is None else f"UPDATE labeler_schema SET version = {newer}")
    with pytest.raises(SchemaError, match=rf"newer labeler \(schema {newer}"):
        p.open_again()
    # and nothing was changed by trying
    assert _schema_version(p) == newer
    assert _sql(p, "SELECT name FROM categories") == [("x",)]


def test_failed_postgresql_migration_leaves_the_old_database(pg_url: str, tmp_path: Path) -> None:
    """A schema step that fails on PostgreSQL changes nothing (its DDL is transactional)."""
    import psycopg

    from labeler.core.pg import translate_ddl

    with psycopg.connect(pg_url, autocommit=True) as con:  # a project at schema 1, by hand
        con.execute("CREATE TABLE labeler_schema (version INTEGER NOT NULL)")
        con.execute("INSERT INTO labeler_schema VALUES (1)")
        for statement in translate_ddl(MIGRATIONS[0]).split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute("CREATE TABLE edit_log (x INTEGER)")  # step 1 -> 2 will collide with this
    with pytest.raises(ProjectError):
        Project.open(pg_url, image_root=tmp_path)
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT version FROM labeler_schema").fetchone() == (1,)
        columns = [
            r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'images'")
        ]
        assert "uncertainty" not in columns


def test_postgresql_project_reopens_without_migrating_again(pg_url: str, tmp_path: Path) -> None:
    with Project.create(pg_url, image_root=tmp_path) as p:
        p.add_category("x")
    with Project.open(pg_url, image_root=tmp_path) as p:
        assert [c.name for c in p.categories()] == ["x"]
        assert _schema_version(p) == SCHEMA_VERSION
    with pytest.raises(ProjectError, match="already holds a project"):
        Project.create(pg_url, image_root=tmp_path)


def test_failed_migration_leaves_the_old_database(tmp_path: Path) -> None:
    make_v1_project(tmp_path / "old")
    con = sqlite3.connect(tmp_path / "old" / DB_NAME, isolation_level=None)
    con.execute("CREATE TABLE edit_log (x INTEGER)")  # step 1 -> 2 will collide with this
    con.close()
    with pytest.raises(ProjectError):
        Project.open(tmp_path / "old")
    con = sqlite3.connect(tmp_path / "old" / DB_NAME)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    columns = [r[1] for r in con.execute("PRAGMA table_info(images)")]
    assert "uncertainty" not in columns
    con.close()
