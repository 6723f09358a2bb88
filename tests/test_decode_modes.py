"""Every image mode reads as 8-bit RGB the way PIL reads it; 16-bit samples keep their high byte; what has
no standard 8-bit meaning, or would exhaust memory, is refused with one line naming the file."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_vit.data.decode import decode_rgb, read_rgb
from robustbench_vit.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)


def encode(im: Image.Image, fmt: str, **kw) -> torch.Tensor:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def pil_rgb(data: torch.Tensor) -> np.ndarray:
    with Image.open(io.BytesIO(data.numpy().tobytes())) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


EIGHT_BIT = {
    "1": lambda: Image.fromarray(RGB).convert("1"),
    "L": lambda: Image.fromarray(RGB).convert("L"),
    "LA": lambda: Image.fromarray(RGB).convert("LA"),
    "P": lambda: Image.fromarray(RGB).convert("P"),
    "RGB": lambda: Image.fromarray(RGB),
    "RGBA": lambda: Image.fromarray(RGB).convert("RGBA"),
}


@pytest.mark.parametrize("mode", list(EIGHT_BIT))
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_eight_bit_modes_read_as_pil_reads_them(mode, fmt):
    if fmt == "BMP" and mode in ("LA", "RGBA"):
        pytest.skip("BMP holds no alpha")
    data = encode(EIGHT_BIT[mode](), fmt)
    out = decode_rgb(data, f"x.{fmt}")
    assert out.dtype == torch.uint8 and out.shape == (3, 20, 24)
    assert np.array_equal(out.numpy(), pil_rgb(data))


def test_cmyk_and_progressive_jpeg_read_as_pil_reads_them():
    for im, kw in ((Image.fromarray(RGB).convert("CMYK"), {}), (Image.fromarray(RGB), {"progressive": True})):
        data = encode(im, "JPEG", quality=95, **kw)
        assert np.abs(decode_rgb(data).numpy().astype(int) - pil_rgb(data)).max() <= 1


def test_sixteen_bit_gray_keeps_the_high_byte():
    a = RNG.integers(0, 65536, (20, 24), dtype=np.uint16)
    for fmt in ("PNG", "TIFF"):
        out = decode_rgb(encode(Image.fromarray(a), fmt), f"g16.{fmt}").numpy()
        assert out.dtype == np.uint8
        assert np.array_equal(out, np.repeat((a >> 8).astype(np.uint8)[None], 3, axis=0)), fmt


def test_sixteen_bit_rgb_png_keeps_the_high_byte():
    a = RNG.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", a[..., ::-1])
    out = decode_rgb(torch.from_numpy(enc.reshape(-1).copy())).numpy()
    assert np.array_equal(out, (a >> 8).astype(np.uint8).transpose(2, 0, 1))
    assert np.array_equal(out, pil_rgb(torch.from_numpy(enc.reshape(-1).copy())))  # PIL's own reading


@pytest.mark.parametrize("mode", ["I", "F"])
def test_thirty_two_bit_pixels_are_refused(mode):
    im = Image.fromarray(RGB[..., 0].astype(np.int32 if mode == "I" else np.float32) * 1000)
    with pytest.raises(DataError, match="no standard 8-bit"):
        decode_rgb(encode(im, "TIFF"), "deep.tif")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_give_their_first_frame(fmt):
    frames = [Image.fromarray(np.full((20, 24, 3), v, np.uint8)) for v in (10, 200, 90)]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)
    out = decode_rgb(data, f"anim.{fmt}")
    assert out.shape == (3, 20, 24)
    assert np.abs(out.numpy().astype(int) - 10).max() <= 1


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "bomb.png"
    Image.new("L", (4000, 3000)).save(big)  # 12 Mpx of zeros: a few KB on disk
    monkeypatch.setenv("RBVIT_MAX_IMAGE_PIXELS", str(10_000_000))
    with pytest.raises(DataError, match=r"bomb\.png has 4000x3000 pixels, over the limit"):
        read_rgb(big)
    monkeypatch.setenv("RBVIT_MAX_IMAGE_PIXELS", str(20_000_000))
    assert read_rgb(big).shape == (3, 3000, 4000)


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1e9"])
def test_a_malformed_pixel_limit_is_refused_at_once(monkeypatch, value):
    """``$RBVIT_MAX_IMAGE_PIXELS`` that is no whole number >= 1 is one line naming it (exit 2 before any
    command runs), never an error at the first image decoded, or a limit that refuses every image."""
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main
    from robustbench_vit.data.decode import max_image_pixels
    from robustbench_vit.errors import ConfigError

    monkeypatch.setenv("RBVIT_MAX_IMAGE_PIXELS", value)
    with pytest.raises(ConfigError, match="RBVIT_MAX_IMAGE_PIXELS"):
        max_image_pixels()
    with pytest.raises(SystemExit) as exit_:
        main.main(["ls", "suites"], prog_name="rbvit")
    assert exit_.value.code == 2
    res = CliRunner().invoke(main, ["ls", "suites"])
    assert res.exit_code == 2 and "RBVIT_MAX_IMAGE_PIXELS" in res.output


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_a_truncated_file_is_refused_whatever_pils_flag_says(fmt, monkeypatch):
    """``ImageFile.LOAD_TRUNCATED_IMAGES = True`` (common in training notebooks) made PIL decode a file cut
    short with gray rows, which was evaluated and cached under the file's digest. Refused either way; the
    caller's flag is left as it was, also after decodes in several threads."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import ImageFile

    big = np.asarray(Image.fromarray(RGB).resize((240, 200)))
    data = encode(Image.fromarray(big), fmt)
    cut = data[: len(data) * 2 // 3].clone()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError, match="cut.img"):
        decode_rgb(cut, "cut.img")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True

    def one(k: int) -> bool:
        try:
            decode_rgb(cut if k % 2 else data, f"{k}.img")
            return True
        except DataError:
            return False

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(16))) == [k % 2 == 0 for k in range(16)]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
