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


def test_numbers_before_text_the_stem_before_more_of_it_and_case_ignored() -> None:
    names = ["b", "1a", "a", "a1b", "a1", "img1a.png", "img1.png", "x.b.png", "X.png", "a10b2.jpg", "a2b100.jpg"]
    assert sorted(names, key=natural_key) == [
        "1a",
        "a",
        "a1",
        "a1b",
        "a2b100.jpg",
        "a10b2.jpg",
        "b",
        "img1.png",
        "img1a.png",
        "X.png",
        "x.b.png",
    ]


def test_a_folder_name_with_a_dot_is_not_a_suffix() -> None:
    assert sorted(["a.b/c2", "a.b/c10", "a.b/c1.png"], key=natural_key) == ["a.b/c1.png", "a.b/c2", "a.b/c10"]
