"""Pascal VOC XML boxes: import, export, round trips, broken files."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_format_common import make_image, project_state

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import encode_mask
from labeler.core.store import Project
from labeler.formats import export_annotations, import_annotations
from labeler.formats.errors import FormatError

XML = """<annotation>
  <folder>JPEGImages</folder>
  <filename>{name}</filename>
  <path>C:\\Users\\someone\\{name}</path>
  <size><width>40</width><height>30</height><depth>3</depth></size>
  <object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>1</difficult>
    <bndbox><xmin>2.5</xmin><ymin>3</ymin><xmax>20</xmax><ymax>25.25</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>30</xmin><ymin>1</ymin><xmax>39</xmax><ymax>9</ymax></bndbox></object>
</annotation>
"""


def voc_layout(tmp_path: Path) -> Path:
    """VOC's own layout: Annotations/ beside JPEGImages/."""
    make_image(tmp_path / "VOC" / "JPEGImages" / "a.jpg", 40, 30, fmt="JPEG")
    (tmp_path / "VOC" / "Annotations").mkdir(parents=True)
    (tmp_path / "VOC" / "Annotations" / "a.xml").write_text(XML.format(name="a.jpg"))
    (tmp_path / "VOC" / "Annotations" / "b.xml").write_text(XML.format(name="b.jpg"))
    return tmp_path / "VOC" / "Annotations"


def test_import_boxes_flags_and_missing_images(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, voc_layout(tmp_path), format="voc")
    assert (report.images, report.annotations, report.done) == (1, 2, 1)
    assert report.skipped == {"empty box": 1, "image file not found": 1, "object of a missing image": 3}
    dog, cat = project.annotations()
    assert dog.kind is Kind.BOX and dog.box_xywh == (2.5, 3, 17.5, 22.25)
    assert dog.attributes == {"difficult": True, "pose": "Left"}
    assert project.category(cat.category_id).name == "cat" and cat.box_xywh == (30, 1, 9, 8)
    record = project.images()[0]
    assert (record.width, record.height) == (40, 30)


def test_export_then_import_gives_the_same_boxes(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    import_annotations(project, voc_layout(tmp_path), format="voc")
    image_id = project.images()[0].id
    blob = np.zeros((30, 40), bool)
    blob[5:9, 11:20] = True
    project.add_annotation(
        Annotation(
            image_id=image_id, category_id=project.ensure_category("blob").id, kind=Kind.MASK, rle=encode_mask(blob)
        )
    )
    report = export_annotations(project, tmp_path / "out", format="voc")
    assert (report.images, report.annotations, report.files) == (1, 3, 1)
    root = ET.parse(tmp_path / "out" / "a.xml").getroot()
    assert root.findtext("filename") == "a.jpg" and root.findtext("size/width") == "40"
    boxes = [
        (o.findtext("name"), [o.findtext(f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax")])
        for o in root.iter("object")
    ]
    assert boxes == [
        ("dog", ["2.5", "3", "20", "25.25"]),
        ("cat", ["30", "1", "39", "9"]),
        ("blob", ["11", "5", "20", "9"]),
    ]  # a mask leaves as its tight box
    again = make_project(tmp_path / "again")
    # the images lie outside the folders of this import: they are found only in a folder the user gives
    assert import_annotations(again, tmp_path / "out", format="voc").images == 0
    import_annotations(again, tmp_path / "out", format="voc", images_dir=tmp_path / "VOC")
    assert [(again.category(a.category_id).name, a.box_xywh, a.attributes) for a in again.annotations()] == [
        ("dog", (2.5, 3, 17.5, 22.25), {"difficult": True, "pose": "Left"}),
        ("cat", (30, 1, 9, 8), {}),
        ("blob", (11, 5, 9, 4), {}),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object>", "not valid XML"),
        (
            "<annotation><filename>a.jpg</filename><object><name>x</name><bndbox><xmin>one</xmin></bndbox>"
            "</object></annotation>",
            "<xmin> must be a number",
        ),
        ("<annotation><filename>a.jpg</filename><object><bndbox/></object></annotation>", "needs a <name>"),
    ],
)
def test_broken_xml_changes_nothing(
    make_project: Callable[[Path], Project], tmp_path: Path, text: str, message: str
) -> None:
    make_image(tmp_path / "a.jpg", fmt="JPEG")
    project = make_project(tmp_path / "proj")
    before = project_state(project)
    (tmp_path / "bad.xml").write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        import_annotations(project, tmp_path / "bad.xml", format="voc")
    assert "bad.xml" in str(info.value)
    assert project_state(project) == before


# ---- real files ---------------------------------------------------------------------------------


def voc_boxes(root: ET.Element) -> list[tuple[str | None, list[float]]]:
    corners = ("xmin", "ymin", "xmax", "ymax")
    return [
        (o.findtext("name"), [float(o.findtext(f"bndbox/{t}") or "nan") for t in corners]) for o in root.iter("object")
    ]


def test_raccoon_round_trip(make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, shared_data / "raccoon" / "annotations", format="voc")
    files = sorted((shared_data / "raccoon" / "annotations").glob("*.xml"))
    objects = sum(len(ET.parse(p).getroot().findall("object")) for p in files)
    assert (report.images, report.annotations) == (150, objects)
    assert not report.skipped
    export_annotations(project, tmp_path / "out", format="voc")
    for xml in sorted((shared_data / "raccoon" / "annotations").glob("*.xml")):
        theirs, mine = ET.parse(xml).getroot(), ET.parse(tmp_path / "out" / xml.name).getroot()
        assert voc_boxes(mine) == voc_boxes(theirs), xml.name


def test_labelme_voc_matches_labelme_rectangles(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "labelme-examples" / "bbox_detection"
    from_voc, from_json = make_project(tmp_path / "a"), make_project(tmp_path / "b")
    import_annotations(
        from_voc, root / "data_dataset_voc" / "Annotations", format="voc", images_dir=root / "data_annotated"
    )
    import_annotations(from_json, root / "data_annotated", format="labelme", add_images=True)

    def boxes(p: Project) -> list[tuple[str, str, tuple[float, ...] | None]]:
        return sorted(
            (Path(p.image(a.image_id).path).name, p.category(a.category_id).name, a.box_xywh) for a in p.annotations()
        )

    assert len(boxes(from_voc)) == 9
    assert boxes(from_voc) == boxes(from_json)
    # and both leave as the same VOC the labelme tools wrote
    export_annotations(from_json, tmp_path / "out", format="voc")
    for xml in (root / "data_dataset_voc" / "Annotations").glob("*.xml"):
        mine, theirs = voc_boxes(ET.parse(tmp_path / "out" / xml.name).getroot()), voc_boxes(ET.parse(xml).getroot())
        assert [name for name, _ in mine] == [name for name, _ in theirs]
        assert [box for _, box in mine] == [pytest.approx(box, abs=1e-5) for _, box in theirs]


def test_labels_for_the_projects_own_images_match_them_instead_of_adding_copies(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    """A project made over a copy of a VOC set's images: the import labels those images (matched by
    file name) and adds only the images the project does not hold."""
    annotations = voc_layout(tmp_path)
    make_image(annotations.parent / "JPEGImages" / "b.jpg", 40, 30, fmt="JPEG")
    make_image(tmp_path / "proj" / "photos" / "a.jpg", 40, 30, fmt="JPEG")
    project = make_project(tmp_path / "proj")
    (own,) = project.add_images([tmp_path / "proj" / "photos" / "a.jpg"])
    report = import_annotations(project, annotations, format="voc")
    assert report.images_matched == 1 and report.images_added == 1
    paths = sorted(r.path for r in project.images())
    assert paths == sorted(
        [
            str(Path("photos") / "a.jpg"),
            str(Path(os.path.relpath(annotations.parent / "JPEGImages" / "b.jpg", tmp_path / "proj"))),
        ]
    )
    assert {a.image_id for a in project.annotations()} >= {own}
