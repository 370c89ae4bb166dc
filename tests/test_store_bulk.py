"""The store's bulk writes: masks given as columns (``add_masks``) are stored as ``add_annotations``
stores them and refused as it refuses them; images added with their sizes; sizes read in bulk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_store import project, write_images  # noqa: F401 - the fixture, on both backends

import labeler.core.geometry as geometry
from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import encode_mask, rle_counts
from labeler.core.store import Project, ProjectError

COLUMNS = "image_id, category_id, kind, geometry, state, model_version, score, iscrowd, group_id, attributes, revision"


def masks_of(width: int, height: int) -> list[dict[str, object]]:
    """Different masks of a ``width`` x ``height`` image: compressed ones (some of whose counts
    hold a backslash, which the stored JSON escapes) and one with uncompressed list counts."""
    rng = np.random.default_rng(3)
    out: list[dict[str, object]] = []
    while sum("\\" in str(m["counts"]) for m in out) < 2 or len(out) < 6:
        out.append(encode_mask(rng.random((height, width)) < rng.random()))
    full = np.zeros((height, width), bool)
    full[2:5, 3:9] = True
    out.append({"size": [height, width], "counts": [int(v) for v in rle_counts(encode_mask(full))]})
    return out


def rows(store: Project, first_id: int) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in store._query(
            f"SELECT {COLUMNS}, created = updated FROM annotations WHERE id >= ? ORDER BY id", (first_id,)
        )
    ]


def top_id(store: Project) -> int:
    return int(store._query("SELECT COALESCE(MAX(id), 0) FROM annotations")[0][0])


def test_add_masks_writes_the_rows_add_annotations_writes(project: Project) -> None:  # noqa: F811
    images = [r.id for r in project.images()]
    masks = masks_of(12, 8)
    placed = [(images[k % len(images)], 1 + k % 2, rle, k % 3 == 0) for k, rle in enumerate(masks)]
    start = top_id(project) + 1
    stored = project.add_annotations(
        [Annotation(image_id=i, category_id=c, kind=Kind.MASK, rle=rle, iscrowd=crowd) for i, c, rle, crowd in placed]
    )
    middle = top_id(project) + 1
    ids = project.add_masks(
        image_ids=[p[0] for p in placed],
        category_ids=[p[1] for p in placed],
        rles=[p[2] for p in placed],
        iscrowd=[p[3] for p in placed],
    )
    assert ids == list(range(middle, middle + len(placed)))
    assert [a.id for a in stored] == list(range(start, middle))
    assert rows(project, middle) == rows(project, start)[: len(placed)]
    assert any("\\\\" in str(r[3]) for r in rows(project, middle))  # escaped as json.dumps escapes it
    log = [(e["action"], e["image_id"], e["kind"]) for e in project.edit_log() if e["annotation_id"] is not None]
    assert log[len(placed) :] == log[: len(placed)]
    assert [project.annotation(i).rle for i in ids] == [a.rle for a in stored]


def test_add_masks_refuses_what_add_annotations_refuses(project: Project) -> None:  # noqa: F811
    image = project.images()[0].id
    whole = encode_mask(np.ones((8, 12), bool))
    broken = [
        {"size": [8, 12], "counts": "1"},  # runs that do not cover the image
        {"size": [8, 12], "counts": "xx"},  # characters outside COCO's alphabet
        encode_mask(np.ones((9, 12), bool)),  # another size than the image's
        {"size": [True, 12], "counts": whole["counts"]},
    ]
    before = top_id(project)
    for rle in broken:
        with pytest.raises(ProjectError) as one:
            project.add_annotation(Annotation(image_id=image, category_id=1, kind=Kind.MASK, rle=rle))
        with pytest.raises(ProjectError) as bulk:
            project.add_masks(image_ids=[image, image], category_ids=[1, 1], rles=[whole, rle], iscrowd=[False, False])
        assert str(bulk.value) == str(one.value)
    with pytest.raises(ProjectError, match="no image with id"):
        project.add_masks(image_ids=[10**6], category_ids=[1], rles=[whole], iscrowd=[False])
    assert top_id(project) == before  # nothing of a refused batch is stored
    with pytest.raises(ProjectError, match="as many"):
        project.add_masks(image_ids=[image], category_ids=[], rles=[whole], iscrowd=[False])


def test_add_images_with_sizes_and_image_sizes(project: Project, tmp_path: Path) -> None:  # noqa: F811
    folder = project.root / "more"
    a, b, c = write_images(folder, ["a.png", "b.png", "c.png"], size=(7, 5))
    known = project.images()[0]
    ids = project.add_images([a, b, project.root / known.path], sizes=[(7, 5), None, (1, 1)])
    assert ids[2] == known.id
    assert [(r.width, r.height) for r in map(project.image, ids)] == [(7, 5), (None, None), (known.width, known.height)]
    count = project.image_count()
    for bad in [(0, 5), (7, -1), (True, 5), (7.0, 5), (10**6, 10**6)]:
        with pytest.raises(ProjectError, match="not a usable image size"):
            project.add_images([c], sizes=[bad])  # type: ignore[list-item]
    with pytest.raises(ProjectError, match="sizes for"):
        project.add_images([c], sizes=[])
    assert project.image_count() == count

    (project.root / known.path).unlink()  # its size is not stored: its header cannot be read
    gone = project.add_images([project.root / "gone.png"])[0]
    sizes = project.image_sizes([*ids, gone, ids[0]])
    assert sizes == {ids[0]: (7, 5), ids[1]: (7, 5), ids[2]: None, gone: None}
    assert project.image(ids[1]).width == 7  # read from its header, then stored, as image_size does
    with pytest.raises(ProjectError, match="no image with id"):
        project.image_sizes([10**6])


def test_the_check_memo_keeps_the_latest_checks() -> None:
    geometry._CHECKED.clear()
    size = geometry._CHECKED.size
    for k in range(size + size // 2):
        geometry.remember_checked(1, k + 1, "0")
    assert all((1, k + 1, "0") in geometry._CHECKED for k in range(size // 2, size + size // 2))
    geometry._CHECKED.clear()
    assert (1, size, "0") not in geometry._CHECKED


def test_accepted_human_masks_only(project: Project) -> None:  # noqa: F811
    image = project.images()[0].id
    (mask_id,) = project.add_masks(
        image_ids=[image], category_ids=[2], rles=[encode_mask(np.eye(8, 12, dtype=bool))], iscrowd=[True]
    )
    stored = project.annotation(mask_id)
    assert (stored.kind, stored.state, stored.model_version, stored.score) == (Kind.MASK, State.ACCEPTED, None, None)
    assert stored.iscrowd and stored.category_id == 2 and stored.revision == 1 and stored.attributes == {}
