"""The rule that an unreadable image cannot be marked done (labeler.core.done)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from labeler.core.done import done_refusal


def test_only_readable_images_can_be_marked_done(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 3)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert done_refusal(good) is None
    assert done_refusal(broken).startswith("Cannot mark done: ")
    assert "no such file" in done_refusal(tmp_path / "gone.png")
    assert "truncated" in done_refusal(good, load_error="truncated data")
