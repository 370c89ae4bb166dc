"""The image list's core: columns of a project's images, natural order, filters, "next", counts."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from labeler.core.annotation import Annotation, ImageRecord, Kind, State
from labeler.core.image_index import ImageIndex, order_file, remember_id_order
from labeler.core.image_state import ImageState
from labeler.core.natural import natural_key
from labeler.core.store import Project
from labeler.core.uncertainty import next_most_uncertain, next_most_uncertain_image

NAMES = ["b/img10.png", "a/img2.png", "a/IMG1.png", "b/img9.png", "a/x1/ab.png", "c/Épée3.png", "c/épée12.png"]


def _project(make_project: Callable[[Path], Project], tmp_path: Path, names: list[str] = NAMES) -> Project:
    """A project of ``names`` (never read: only their names count), on each backend in turn."""
    project = make_project(tmp_path / "p")
    project.add_images([tmp_path / "p" / n for n in names])
    return project


def test_the_index_lists_every_image_in_natural_order_with_names_and_paths(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    with _project(make_project, tmp_path) as project:
        index = ImageIndex.load(project)
        paths = [index.path_at(i) for i in range(len(index))]
        assert paths == sorted(NAMES, key=natural_key)
        assert [index.name_at(i) for i in range(len(index))] == [p.rsplit("/", 1)[-1] for p in paths]
        by_path = {r.path: r.id for r in project.images()}
        assert [index.id_at(i) for i in range(len(index))] == [by_path[p] for p in paths]
        assert all(index.position_of(by_path[p]) == n for n, p in enumerate(paths))
        assert index.position_of(10_000) is None


def test_states_counts_and_incremental_changes(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    with _project(make_project, tmp_path) as project:
        ids = {r.path: r.id for r in project.images()}
        cat = project.add_category("x")
        project.add_annotation(
            Annotation(image_id=ids["a/img2.png"], category_id=cat.id, kind=Kind.BOX, box_xywh=(1, 1, 2, 2))
        )
        project.set_done(ids["b/img9.png"])
        index = ImageIndex.load(project)
        assert index.state_of(ids["a/img2.png"]) is ImageState.LABELLED
        assert index.state_of(ids["b/img9.png"]) is ImageState.DONE
        assert index.counts() == {
            ImageState.UNLABELLED: 5,
            ImageState.LABELLED: 1,
            ImageState.PROPOSALS: 0,
            ImageState.DONE: 1,
        }
        assert index.set_state(ids["a/IMG1.png"], ImageState.DONE)
        assert not index.set_state(ids["a/IMG1.png"], ImageState.DONE)  # unchanged
        assert index.counts()[ImageState.DONE] == 2 and index.counts()[ImageState.UNLABELLED] == 4


def test_filters_by_state_and_by_file_name_only(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    with _project(make_project, tmp_path) as project:
        ids = {r.path: r.id for r in project.images()}
        project.set_done(ids["a/img2.png"])
        index = ImageIndex.load(project)

        def paths(**kw: object) -> list[str]:
            return [index.path_at(int(i)) for i in index.filter(**kw)]

        assert paths(text="IMG1.") == ["a/IMG1.png"]  # case-insensitive
        assert paths(text="img1") == ["a/IMG1.png", "b/img10.png"]
        assert paths(text="x1") == []  # the folder's name does not count
        assert paths(text="png.") == [] and paths(text="1.png") == ["a/IMG1.png"]
        assert paths(text="g10.p") == ["b/img10.png"]
        assert paths(text="épée") == ["c/Épée3.png", "c/épée12.png"]  # non-ASCII folds too
        assert paths(states=frozenset({ImageState.DONE})) == ["a/img2.png"]
        assert paths(states=frozenset({ImageState.UNLABELLED}), text="img") == [
            "a/IMG1.png",
            "b/img9.png",
            "b/img10.png",
        ]
        assert paths(text="  ") == paths()


def test_next_not_done_goes_in_list_order_and_wraps(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    with _project(make_project, tmp_path) as project:
        index = ImageIndex.load(project)
        order = [index.id_at(i) for i in range(len(index))]
        for image_id in order[2:5]:
            project.set_done(image_id)
            index.set_state(image_id, ImageState.DONE)
        assert index.next_not_done(None) == order[0]
        assert index.next_not_done(order[1]) == order[5]
        assert index.next_not_done(order[-1]) == order[0]
        for image_id in order:
            index.set_state(image_id, ImageState.DONE)
        index.set_state(order[3], ImageState.UNLABELLED)
        assert index.next_not_done(order[3]) is None  # the only one left is the one shown
        assert ImageIndex.empty().next_not_done(None) is None


def test_the_order_is_kept_beside_the_project_and_redone_when_the_images_change(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    with _project(make_project, tmp_path) as project:
        ImageIndex.load(project)
        assert order_file(project).is_file()
        # a stale cache (another image set) is not used: a new image sorts into its place
        project.add_images([tmp_path / "p" / "a/img3.png"])
        index = ImageIndex.load(project)
        paths = [index.path_at(i) for i in range(len(index))]
        assert paths == sorted([*NAMES, "a/img3.png"], key=natural_key)
        # a damaged cache is sorted again
        order_file(project).write_bytes(b"not an npz")
        assert [ImageIndex.load(project).path_at(i) for i in range(len(index))] == paths


def test_the_remembered_id_order_is_used_for_those_images_only(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    names = ["d/img10.png", "d/img9.png", "e/a.png"]  # in this id order, not the natural one
    with _project(make_project, tmp_path, names) as project:
        remember_id_order(project)  # what init says after filling an empty project in natural order
        index = ImageIndex.load(project, cache=False)
        assert [index.path_at(i) for i in range(len(index))] == names  # taken as it is: not sorted again
        project.add_images([tmp_path / "p" / "d/img1.png"])
        index = ImageIndex.load(project, cache=False)
        assert [index.path_at(i) for i in range(len(index))] == ["d/img1.png", "d/img9.png", "d/img10.png", "e/a.png"]


def test_a_read_only_project_still_lists_its_images(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    with _project(make_project, tmp_path) as project:
        cache = order_file(project).parent
        cache.mkdir(exist_ok=True)
        cache.chmod(0o500)
        try:
            order_file(project).unlink(missing_ok=True)
            assert len(ImageIndex.load(project)) == len(NAMES)
        finally:
            cache.chmod(0o700)


def test_proposals_make_the_state_and_the_store_finds_changed_images(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    from labeler.core.store import ModelVersion

    with _project(make_project, tmp_path) as project:
        ids = [r.id for r in project.images()]
        cat = project.add_category("x")
        version = project.add_model_version(ModelVersion(plugin="p", settings={}, categories=(cat.id,), checkpoint="c"))
        mark = project.annotation_watermark()
        assert project.images_changed_since(mark) == []
        project.replace_proposals(
            ids[1],
            plugin="p",
            proposals=[
                Annotation(
                    image_id=ids[1],
                    category_id=cat.id,
                    kind=Kind.BOX,
                    box_xywh=(0, 0, 1, 1),
                    state=State.PROPOSED,
                    model_version=version.id,
                    score=0.5,
                )
            ],
        )
        assert ImageIndex.load(project).state_of(ids[1]) is ImageState.PROPOSALS
        assert project.images_changed_since(mark) == [ids[1]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_next_most_uncertain_through_the_index_walks_as_the_rule_does(
    make_project: Callable[[Path], Project], tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    with _project(make_project, tmp_path, [f"i{n}.png" for n in range(40)]) as project:
        for record in project.images():
            if rng.random() < 0.7:
                project.replace_proposals(
                    record.id,
                    plugin="p",
                    proposals=[],  # as auto-labelling sets it
                    uncertainty=rng.choice([0.1, 0.5, 0.5, 0.9, rng.random()]),
                )
            if rng.random() < 0.2:
                project.set_done(record.id)
        records = project.images()
        current: ImageRecord | None = None
        for _ in range(60):
            expected = next_most_uncertain([r for r in records if not r.done], current=current)
            got = next_most_uncertain_image(project, current=current)
            assert (got.id if got else None) == (expected.id if expected else None)
            current = got or (records[rng.randrange(len(records))])
        assert project.uncertain_image_count() == sum(1 for r in records if not r.done and r.uncertainty is not None)


def test_image_columns_of_an_empty_project(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    with make_project(tmp_path / "e") as project:
        columns = project.image_columns()
        assert len(columns.ids) == 0 and columns.paths == b"" and len(ImageIndex.load(project)) == 0
        assert np.array_equal(project.labelled_image_ids()[0], np.zeros(0))
