"""The walk of "next most uncertain" and the number shown for it (labeler.core.uncertainty)."""

from __future__ import annotations

from labeler.core.annotation import ImageRecord
from labeler.core.uncertainty import describe_uncertainty, next_most_uncertain, uncertainty_order


def rec(image_id: int, uncertainty: float | None, *, done: bool = False) -> ImageRecord:
    return ImageRecord(id=image_id, path=f"{image_id}.png", width=None, height=None, done=done, uncertainty=uncertainty)


RECORDS = [rec(1, 0.2), rec(2, 0.9), rec(3, None), rec(4, 0.5), rec(5, 0.95, done=True), rec(6, 0.5)]


def test_order_is_most_uncertain_first_without_done_or_unlabelled_images() -> None:
    assert [r.id for r in uncertainty_order(RECORDS)] == [2, 4, 6, 1]


def test_each_press_goes_one_step_down_and_never_back_up() -> None:
    by_id = {r.id: r for r in RECORDS}
    seen, current = [], by_id[3]  # an image that was never auto-labelled: start at the top
    for _ in range(5):
        current = next_most_uncertain(RECORDS, current=current)
        assert current is not None
        seen.append(current.id)
    assert seen == [2, 4, 6, 1, 2]  # wraps round at the end (no ping-pong between the top two)
    # an image just marked done continues from where it stood
    assert next_most_uncertain(RECORDS, current=rec(4, 0.5, done=True)).id == 6
    assert next_most_uncertain([rec(1, 0.3)], current=rec(1, 0.3)) is None
    assert next_most_uncertain([], current=None) is None


def test_the_shown_number_is_the_stored_one() -> None:
    assert describe_uncertainty(0.4321) == "uncertainty 0.43"
    assert describe_uncertainty(None) == "not auto-labelled"
