"""Natural sort order of image names (labeler.core.natural)."""

from __future__ import annotations

from labeler.core.natural import natural_key


def test_numbers_sort_as_numbers_and_folders_first() -> None:
    names = ["img10.png", "img2.png", "img1.png", "Img3.png", "img0.png", "b/img1.png", "a/img11.png", "a/img9.png"]
    assert sorted(names, key=natural_key) == [
        "a/img9.png",
        "a/img11.png",
        "b/img1.png",
        "img0.png",
        "img1.png",
        "img2.png",
        "Img3.png",
        "img10.png",
    ]
    assert sorted(["x.png", "x01.png", "x1.png"], key=natural_key) == ["x.png", "x01.png", "x1.png"]
