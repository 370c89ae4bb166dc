"""Safe image reading: orientation, colour modes, content sniffing, bombs, Unicode, reduced decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import labeler.core.images as images
from labeler.core.images import ImageError, is_image_file, read_image, read_image_at_least, read_image_size


def gradient(h: int, w: int) -> np.ndarray:
    """An asymmetric RGB test pattern (every orientation looks different)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + 2 * y) % 256], axis=-1).astype(np.uint8)


def save_with_orientation(path: Path, pixels: np.ndarray, orientation: int, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(pixels).save(path, format=fmt, exif=exif.tobytes(), **kwargs)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int, fmt: str) -> None:
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    save_with_orientation(path, gradient(24, 40), orientation, fmt)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    pixels = read_image(path)
    assert pixels.shape == expected.shape
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 8  # decoders may round differently
    w, h = read_image_size(path)
    assert (h, w) == pixels.shape[:2]


def test_orientation_6_rotates_clockwise(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:6, :6] = (255, 0, 0)  # red top-left corner as stored
    path = tmp_path / "rot.jpg"
    save_with_orientation(path, pixels, 6, "JPEG")
    out = read_image(path)
    assert out.shape == (40, 20, 3)
    assert read_image_size(path) == (20, 40)
    # 90 degrees clockwise: the stored top-left corner is shown at the top-right
    assert out[2, -3, 0] > 200 and out[2, -3, 1:].max() < 60
    assert out[2, 2].max() < 60


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_orientation_reads_upright(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "bad.jpg"
    save_with_orientation(path, gradient(10, 30), orientation, "JPEG")
    assert read_image(path).shape == (10, 30, 3)
    assert read_image_size(path) == (30, 10)


def test_png_named_jpg_reads_by_content(tmp_path: Path) -> None:
    pixels = gradient(9, 13)
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(pixels).save(path, format="PNG")
    assert np.array_equal(read_image(path), pixels)
    assert read_image_size(path) == (13, 9)


def test_jpeg_named_png_reads_by_content(tmp_path: Path) -> None:
    path = tmp_path / "really_a_jpeg.png"
    Image.fromarray(gradient(16, 16)).save(path, format="JPEG")
    assert read_image(path).shape == (16, 16, 3)


def test_rgba_becomes_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 255  # opaque: the colour as stored
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (10, 20, 30)


def test_palette_becomes_rgb(tmp_path: Path) -> None:
    im = Image.new("P", (7, 5))
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    im.putpixel((3, 2), 1)
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert tuple(out[2, 3]) == (200, 100, 50) and tuple(out[0, 0]) == (0, 0, 0)


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (6, 10, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 1], gray) and np.array_equal(out[..., 2], gray)


def test_16_bit_png_becomes_8_bit_rgb(tmp_path: Path) -> None:
    gray16 = (np.arange(50, dtype=np.uint16).reshape(5, 10) * 1300).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (5, 10, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], (gray16 >> 8).astype(np.uint8))
    rgb16 = np.stack([gray16, gray16 // 2, gray16 // 4], axis=-1)
    assert cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.uint8
    assert np.array_equal(out, (rgb16 >> 8).astype(np.uint8))


def test_gif_reads_through_the_fallback(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 6, 3), 255, dtype=np.uint8)).save(tmp_path / "x.gif")
    out = read_image(tmp_path / "x.gif")
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8\xff\xe0" + b"\x00" * 10],
    ids=["empty", "text", "png-magic-only", "jpeg-magic-only"],
)
def test_corrupt_file_is_an_image_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        read_image(path)
    with pytest.raises(ImageError):
        read_image_size(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_an_image_error(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / f"cut.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut"):
        read_image(path)


def test_missing_file_and_folder_are_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError):
        read_image(tmp_path)


def _bomb(path: Path, side: int) -> None:
    """A tiny file whose header says ``side`` x ``side`` pixels (1-bit, all black, compresses to almost nothing)."""
    Image.new("1", (side, side)).save(path, format="PNG", optimize=True)


def test_decompression_bomb_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    _bomb(path, 12_000)
    assert path.stat().st_size < 100_000

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    monkeypatch.setattr(images.np, "fromfile", no_decoding)
    with pytest.raises(ImageError, match=r"12000 x 12000 pixels is over the limit of 100,000,000"):
        read_image(path, max_pixels=100_000_000)
    assert read_image_size(path) == (12_000, 12_000)  # the header alone is fine


def test_pixel_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(gradient(100, 100)).save(path)
    assert read_image(path).shape == (100, 100, 3)
    with pytest.raises(ImageError, match="over the limit of 9,999"):
        read_image(path, max_pixels=9_999)
    monkeypatch.setenv("LABELER_MAX_PIXELS", "5000")
    with pytest.raises(ImageError, match="LABELER_MAX_PIXELS"):
        read_image(path)
    assert read_image(path, max_pixels=10_000).shape == (100, 100, 3)  # an explicit limit wins
    monkeypatch.setenv("LABELER_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="whole number"):
        read_image(path)


def test_unicode_path(tmp_path: Path) -> None:
    folder = tmp_path / "ünïcödé 写真 фото"
    folder.mkdir()
    path = folder / "ñame 画像.jpg"
    Image.fromarray(gradient(12, 20)).save(path, format="JPEG", quality=100)
    assert read_image(path).shape == (12, 20, 3)
    assert read_image_size(path) == (20, 12)
    assert read_image(str(path)).shape == (12, 20, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
def test_reduce_sizes(tmp_path: Path, reduce: int, fmt: str) -> None:
    path = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(gradient(96, 160)).save(path, format=fmt)
    out = read_image(path, reduce=reduce)
    assert out.shape == (96 // reduce, 160 // reduce, 3) and out.dtype == np.uint8


def test_reduce_honours_orientation(tmp_path: Path) -> None:
    path = tmp_path / "r.jpg"
    save_with_orientation(path, gradient(64, 128), 8, "JPEG")
    assert read_image(path, reduce=4).shape == (32, 16, 3)


def test_read_image_at_least_shrinks_jpegs_only_as_far_as_asked(tmp_path: Path) -> None:
    jpeg = tmp_path / "big.jpg"
    save_with_orientation(jpeg, gradient(400, 640), 6, "JPEG")  # stored 640 wide, shown 400 wide
    pixels, shape = read_image_at_least(jpeg, 96)
    assert shape == (640, 400)  # the full upright size
    assert pixels.shape == (160, 100, 3)  # 1/4: the shorter side keeps at least 96
    full = read_image(jpeg)
    small = cv2.resize(full, (100, 160), interpolation=cv2.INTER_AREA)
    assert np.abs(pixels.astype(int) - small.astype(int)).mean() < 3  # same picture
    assert read_image_at_least(jpeg, 400)[0].shape == full.shape  # 1/2 would leave 200 < 400
    png = tmp_path / "big.png"
    Image.fromarray(gradient(400, 640)).save(png)
    pixels, shape = read_image_at_least(png, 10)  # other formats are decoded whole
    assert pixels.shape == (400, 640, 3) and shape == (400, 640)
    with pytest.raises(ImageError, match="over the limit"):
        read_image_at_least(jpeg, 96, max_pixels=1000)


def test_reduce_must_be_a_power_of_two_up_to_8(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(gradient(8, 8)).save(path)
    with pytest.raises(ValueError, match="reduce"):
        read_image(path, reduce=3)


def test_is_image_file_goes_by_name() -> None:
    assert is_image_file("a/b/c.JPG") and is_image_file("x.tiff") and is_image_file(Path("y.png"))
    assert not is_image_file("notes.txt") and not is_image_file("labeler.db") and not is_image_file("png")


def test_transparent_pixels_are_composited_on_the_neutral_background(tmp_path: Path) -> None:
    from labeler.core.images import BACKGROUND_RGB, read_image_at_least

    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., :3] = (255, 0, 255)  # junk under the transparent part (pink fringes)
    rgba[:, :5, 3] = 255  # left half opaque
    rgba[:, :5, :3] = (10, 200, 30)
    rgba[:, 7:, 3] = 128  # a half-transparent strip
    path = tmp_path / "fruit.jpg"  # a PNG named .jpg, as in the issue
    Image.fromarray(rgba, "RGBA").save(path, format="PNG")
    out = read_image(path)
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8
    assert (out[:, :5] == (10, 200, 30)).all()
    assert (out[:, 5:7] == BACKGROUND_RGB).all()
    assert np.allclose(out[:, 7:], np.array((255, 0, 255)) * 128 / 255 + np.array(BACKGROUND_RGB) * 127 / 255, atol=1)
    assert (read_image_at_least(path, 4)[0] == out).all()  # the models' inputs see the same pixels
    palette = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    index = palette.getpixel((6, 0))
    palette.save(tmp_path / "p.png", transparency=index)
    assert (read_image(tmp_path / "p.png")[:, 5:7] == BACKGROUND_RGB).all()
