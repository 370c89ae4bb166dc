"""Taking an import back in one step: what an import added is recorded while it runs, and
:func:`undo_import` removes exactly that.

An import (:func:`labeler.formats.import_annotations`) adds images, categories and annotations,
marks images done and sets ignore masks, all in one transaction. :func:`record_import` runs it
inside a transaction of its own that also notes the project's state just before and just after
(the write lock is held throughout, so no other program's write falls in between).
:func:`undo_import` then, in one transaction:

- deletes the annotations the import added (and any label since drawn on an image it added);
- deletes the images it added;
- marks not done the images it marked done (those still done);
- puts back the ignore masks it changed;
- deletes the categories it added that no annotation uses any more.

Labels the user drew on the project's own images after the import stay. No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from labeler.core.store import Project

R = TypeVar("R")


@dataclass(frozen=True)
class ProjectMark:
    """The highest image, annotation and category ids, the images marked done and the ignore
    masks (as stored text) of a project at one moment."""

    last_image: int
    last_annotation: int
    last_category: int
    done: frozenset[int]
    ignore_masks: dict[int, str]


@dataclass(frozen=True)
class ImportRecord:
    """What one import changed: the project just ``before`` and just ``after`` it."""

    before: ProjectMark
    after: ProjectMark

    @property
    def images_added(self) -> range:
        return range(self.before.last_image + 1, self.after.last_image + 1)

    @property
    def annotations_added(self) -> range:
        return range(self.before.last_annotation + 1, self.after.last_annotation + 1)

    @property
    def categories_added(self) -> range:
        return range(self.before.last_category + 1, self.after.last_category + 1)

    @property
    def marked_done(self) -> frozenset[int]:
        return self.after.done - self.before.done

    @property
    def ignore_masks_changed(self) -> frozenset[int]:
        before, after = self.before.ignore_masks, self.after.ignore_masks
        return frozenset(i for i in before.keys() | after.keys() if before.get(i) != after.get(i))

    def is_empty(self) -> bool:
        return not (
            self.images_added
            or self.annotations_added
            or self.categories_added
            or self.marked_done
            or self.ignore_masks_changed
        )

    def describe(self) -> str:
        """``'3 images, 40 labels, 2 classes, 3 done marks'``: what undoing it removes."""
        parts = [
            (len(self.images_added), "image"),
            (len(self.annotations_added), "label"),
            (len(self.categories_added), "class"),
            (len(self.marked_done), "done mark"),
            (len(self.ignore_masks_changed), "ignore mask"),
        ]
        text = ", ".join(
            f"{n} {word}{'es' if word == 'class' and n != 1 else 's' if n != 1 else ''}" for n, word in parts if n
        )
        return text or "nothing"


def mark_project(project: Project) -> ProjectMark:
    """The project's :class:`ProjectMark` now (a handful of SQL queries)."""

    def last(table: str) -> int:
        rows = project._query(f"SELECT COALESCE(MAX(id), 0) AS n FROM {table}")  # core's own store
        return int(rows[0]["n"])

    done = frozenset(int(r["id"]) for r in project._query("SELECT id FROM images WHERE done = 1"))  # core's own store
    masks = {
        int(r["id"]): str(r["ignore_rle"])
        for r in project._query("SELECT id, ignore_rle FROM images WHERE ignore_rle IS NOT NULL")
    }  # core's own store
    return ProjectMark(
        last_image=last("images"),
        last_annotation=last("annotations"),
        last_category=last("categories"),
        done=done,
        ignore_masks=masks,
    )


def record_import(project: Project, run: Callable[[], R]) -> tuple[R, ImportRecord]:
    """Run the import ``run()`` (which writes to ``project``) and return its result with what it
    changed. An import that raises leaves the project as it was (one transaction)."""
    with project.transaction():
        before = mark_project(project)
        result = run()
        after = mark_project(project)
    return result, ImportRecord(before, after)


def undo_import(project: Project, record: ImportRecord) -> None:
    """Remove what the import of ``record`` added, in one transaction (see the module's docstring)."""
    conn = project._conn  # core's own store
    with project.transaction():
        added = record.annotations_added
        conn.execute("DELETE FROM annotations WHERE id >= ? AND id < ?", (added.start, added.stop))
        images = record.images_added
        conn.execute("DELETE FROM annotations WHERE image_id >= ? AND image_id < ?", (images.start, images.stop))
        conn.execute("DELETE FROM images WHERE id >= ? AND id < ?", (images.start, images.stop))
        conn.executemany(
            "UPDATE images SET done = 0 WHERE id = ?", [(i,) for i in sorted(record.marked_done) if i not in images]
        )
        conn.executemany(
            "UPDATE images SET ignore_rle = ? WHERE id = ?",
            [(record.before.ignore_masks.get(i), i) for i in sorted(record.ignore_masks_changed) if i not in images],
        )
        categories = record.categories_added
        conn.execute(
            "DELETE FROM categories WHERE id >= ? AND id < ? AND id NOT IN "
            "(SELECT DISTINCT category_id FROM annotations)",
            (categories.start, categories.stop),
        )
        project.log_edit("undo import", detail={"removed": record.describe()})
