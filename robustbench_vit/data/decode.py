"""Decode one image file to uint8 RGB and apply the eval geometry (resize + center crop).

torchvision.io decodes about 2x faster than PIL per core (libjpeg-turbo both, the same pixels); PIL is
the fallback for formats it does not read. The geometry is timm's eval transform (short side to
``floor(size / crop_pct)``, then center crop) with the model's interpolation: on the CPU computed by
Pillow on PIL images, as timm computes it, so the cached pixels are the reference's; on a GPU by
torchvision's antialiased tensor resize (within a level or two).

:func:`decode_batch` is the GPU data path: the JPEGs of a batch go to ``decode_jpeg`` in one call
on the device (nvjpeg on CUDA), are resized there, and come back as one uint8 batch; formats the
device decoder does not read fall back to the CPU decoder one by one.

A change here that can change a decoded pixel bumps :data:`robustbench_vit.identity.DECODE_VERSION`, which
keys every decoded-image cache entry and run id (``tests/test_code_versions.py`` asks for the decision).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import InterpolationMode

from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError, DataError

__all__ = [
    "read_bytes",
    "decode_rgb",
    "read_rgb",
    "apply_geometry",
    "resized_size",
    "tensor_geometry",
    "load_image",
    "decode_batch",
    "is_jpeg",
]

log = logging.getLogger(__name__)

#: encoded bytes sent to one device decode call (bounds the decoded batch in device memory)
DEVICE_DECODE_BYTES = 64 * 2**20

_INTERP = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
    "lanczos": InterpolationMode.LANCZOS,
}


def read_bytes(path: str | Path) -> torch.Tensor:
    """The encoded bytes of an image file as a uint8 1-D tensor; a missing file raises ``DataError``."""
    path = Path(path)
    try:
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror or e}") from None


def max_image_pixels() -> int:
    """The largest image (width x height) rbvit decodes: ``$RBVIT_MAX_IMAGE_PIXELS`` (``rbvit
    --max-image-pixels``), else PIL's default decompression-bomb limit."""
    from PIL import Image

    env = os.environ.get("RBVIT_MAX_IMAGE_PIXELS")
    if not env:
        return int(Image.MAX_IMAGE_PIXELS or 89_478_485)
    try:
        limit = int(env)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"RBVIT_MAX_IMAGE_PIXELS must be a whole number of pixels >= 1, got {env!r}")
    return limit


def _header(data: torch.Tensor, name: str | Path) -> tuple[str, tuple[int, int]]:
    """``(PIL mode, (width, height))`` from the header alone; a decompression bomb is refused here, before
    a single pixel is decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.numpy().tobytes())) as im:
                mode, size = im.mode, im.size
    except Image.DecompressionBombError:
        mode, size = "", (max_image_pixels() + 1, 1)
    except Exception:  # noqa: BLE001 - not a format PIL knows: torchvision decides below
        return "", (0, 0)
    limit = max_image_pixels()
    if size[0] * size[1] > limit:
        raise DataError(
            f"image {name} has {size[0]}x{size[1]} pixels, over the limit of {limit} (a decompression bomb?); "
            "raise it with --max-image-pixels N if the image is genuine"
        )
    return mode, size


#: PIL modes whose values have no standard 8-bit scale (32-bit integers, floats): refused, never guessed
_UNSCALED_MODES = ("I", "F", "I;32", "I;32B", "F;32", "F;32B")


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    """16-bit samples to 8 bits by their high byte (what PIL does for 16-bit RGB): 65535 -> 255."""
    if img.dtype == torch.uint8:
        return img
    if img.dtype == torch.uint16:
        return (img.to(torch.int32) >> 8).to(torch.uint8)
    raise DataError(f"unsupported pixel type {img.dtype}")


_truncated_lock = threading.Lock()
_truncated_users = 0
_callers_setting = False


@contextlib.contextmanager
def pil_refuses_truncated() -> Iterator[None]:
    """PIL refuses a truncated file inside, whatever the caller set: ``ImageFile.LOAD_TRUNCATED_IMAGES = True``
    (a line common in training notebooks) made PIL decode a file cut short with its missing rows gray, which
    was then evaluated, and cached under the file's digest for later runs. The process-wide flag is held off
    while any decode runs in rbvit's threads, and the caller's value is put back after the last one."""
    from PIL import ImageFile

    global _truncated_users, _callers_setting
    with _truncated_lock:
        if _truncated_users == 0:
            _callers_setting = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _truncated_users += 1
    try:
        yield
    finally:
        with _truncated_lock:
            _truncated_users -= 1
            if _truncated_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _callers_setting


def decode_rgb(data: torch.Tensor, name: str | Path = "<bytes>") -> torch.Tensor:
    """Decode encoded bytes on the CPU to a uint8 (3, H, W) RGB tensor; undecodable bytes raise
    ``DataError`` naming ``name``.

    Every mode reads as PIL reads it, in 8-bit RGB: bilevel, gray, palette, gray/RGB with alpha (alpha
    dropped), CMYK; 16-bit gray or RGB (PNG, TIFF) by the high byte of each sample, never the low; the
    first frame of an animated GIF/WebP. 32-bit integer and float images have no standard 8-bit scale and
    are refused; an image over :func:`max_image_pixels` is refused before it is decoded, a truncated one
    whatever PIL's ``LOAD_TRUNCATED_IMAGES`` says (:func:`pil_refuses_truncated`)."""
    mode, _ = _header(data, name)
    if mode in _UNSCALED_MODES:
        raise DataError(
            f"image {name} has {mode!r} pixels (32-bit integer or float), which have no standard 8-bit "
            "scale; convert it to an 8- or 16-bit image"
        )
    try:
        img = decode_image(data, mode=ImageReadMode.RGB)
        if img.ndim == 4:  # an animated image: its first frame
            img = img[0]
        return _to_uint8(img).contiguous()
    except (RuntimeError, ValueError):
        pass
    try:  # formats torchvision.io does not decode (tiff, some CMYK/progressive files)
        from PIL import Image

        with pil_refuses_truncated(), Image.open(io.BytesIO(data.numpy().tobytes())) as im:
            im.seek(0)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr16 = np.asarray(im, dtype=np.uint16)
                arr = np.repeat((arr16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
            else:
                arr = np.asarray(im.convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    except DataError:
        raise
    except Exception as e:
        from PIL import UnidentifiedImageError

        why = "not an image format PIL or torchvision decodes" if isinstance(e, UnidentifiedImageError) else e
        raise DataError(f"cannot read image {name}: {type(e).__name__}: {why}") from None


def read_rgb(path: str | Path) -> torch.Tensor:
    """Read an image file as a uint8 (3, H, W) RGB tensor; an unreadable file raises ``DataError``."""
    return decode_rgb(read_bytes(path), path)


def resized_size(h: int, w: int, dc: DataConfig) -> list[int] | None:
    """The size timm's eval transform resizes an ``h`` x ``w`` image to before its centre crop, as
    torchvision's ``Resize`` takes it (one entry: the short side), or ``None`` when it resizes nothing."""
    rh, rw = dc.resize_size
    if dc.crop_mode == "squash":
        return [rh, rw]
    if rh == rw:
        return None if min(h, w) == rh else [rh]  # short side, like timm's ``Resize(int)``
    ratio = min(h / rh, w / rw)  # timm's ResizeKeepRatio (shortest edge to its target)
    return [round(h / ratio), round(w / ratio)]


def apply_geometry(img: torch.Tensor, dc: DataConfig) -> torch.Tensor:
    """Resize + center-crop uint8 (3, H, W) or (B, 3, H, W) images to ``dc.image_size``; identity when
    they already fit.

    On the CPU the steps run on PIL images, exactly as timm's eval transform (``Resize`` + ``CenterCrop``
    of torchvision on PIL images, Pillow's fixed-point resampling) computes them, pixel for pixel. On
    another device (the GPU data path) they run on tensors: :func:`tensor_geometry`."""
    th, tw = dc.image_size
    h, w = img.shape[-2:]
    if (h, w) == (th, tw) and dc.crop_pct == 1.0:
        return img
    if img.ndim == 4:
        return (
            torch.stack([apply_geometry(one, dc) for one in img]) if len(img) else img.new_empty(0, 3, th, tw)
        )
    if img.device.type != "cpu" or img.dtype != torch.uint8:  # PIL holds 8-bit images only
        return tensor_geometry(img, dc)
    from PIL import Image

    size = resized_size(h, w, dc)
    # planes in and out (PIL's merge/split): a (3, H, W) <-> (H, W, 3) transpose costs more than the resize
    pil = Image.merge("RGB", [Image.fromarray(plane) for plane in img.contiguous().numpy()])
    if size is not None:
        pil = TF.resize(pil, size, interpolation=_INTERP[dc.interpolation])
    pil = TF.center_crop(pil, [th, tw])
    return torch.from_numpy(np.stack([np.asarray(band) for band in pil.split()]))


def tensor_geometry(img: torch.Tensor, dc: DataConfig) -> torch.Tensor:
    """:func:`apply_geometry` on a uint8 (3, H, W) tensor wherever it is: torchvision's antialiased resize
    (within a level or two of Pillow's in a few values per thousand), and ``nearest`` as Pillow samples it
    (:func:`pil_nearest_indices`; tensor ``nearest`` is half a pixel off and ``nearest-exact`` rounds
    differently at pixel boundaries)."""
    size = resized_size(*img.shape[-2:], dc)
    if size is not None and dc.interpolation == "nearest":
        h, w = img.shape[-2:]
        oh, ow = (size[0], size[1]) if len(size) == 2 else _short_side_size(h, w, size[0])
        rows, cols = (pil_nearest_indices(n, m).to(img.device) for n, m in ((h, oh), (w, ow)))
        img = img.index_select(-2, rows).index_select(-1, cols)
    elif size is not None:
        img = TF.resize(img, size, interpolation=_INTERP[dc.interpolation], antialias=True)
    return TF.center_crop(img, list(dc.image_size)).contiguous()


def _short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` output size: the short side to ``short``, the long one truncated."""
    return (short, int(short * w / h)) if h <= w else (int(short * h / w), short)


def pil_nearest_indices(n_in: int, n_out: int) -> torch.Tensor:
    """The source index of each output pixel of Pillow's NEAREST resize along one axis: its affine scale
    loop (``ImagingScaleAffine``) starts at half a step and adds the step ``n_in / n_out`` pixel by pixel
    in double precision, truncating; the running sum (``np.cumsum`` adds in the same order) decides the
    ties at pixel boundaries."""
    step = n_in / n_out
    coords = np.cumsum(np.concatenate([[step * 0.5], np.full(n_out - 1, step)]))
    return torch.from_numpy(np.clip(coords.astype(np.int64), 0, n_in - 1))


def load_image(path: str | Path, dc: DataConfig) -> torch.Tensor:
    return apply_geometry(read_rgb(path), dc)


def is_jpeg(data: torch.Tensor) -> bool:
    """Whether encoded bytes start with the JPEG SOI marker."""
    return data.numel() > 3 and data[:3].tolist() == [0xFF, 0xD8, 0xFF]


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def jpeg_components(data: torch.Tensor) -> int | None:
    """Colour components of a JPEG from its frame header (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK); ``None``
    when no frame header precedes the scan."""
    b = data.numpy().tobytes()
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            return None
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
        elif marker in _SOF:
            return b[pos + 9] if pos + 9 < len(b) else None
        elif marker == 0xDA:  # start of scan: no frame header seen
            return None
        else:
            pos += 2 + ((b[pos + 2] << 8) | b[pos + 3])
    return None


def ends_complete(data: torch.Tensor) -> bool:
    """Whether encoded JPEG bytes end with the end-of-image marker (``FF D9``): a file cut short (a copy
    interrupted, a download truncated) does not."""
    return data.numel() > 4 and data[-2:].tolist() == [0xFF, 0xD9]


def _for_device_decoder(data: torch.Tensor) -> bool:
    """JPEGs nvjpeg decodes to RGB: gray or 3-component, ending with their end-of-image marker. CMYK/YCCK
    (4) stay with libjpeg on the CPU, as nvjpeg does not convert them (torchvision's own tests leave them
    out); so does a JPEG without its end marker, which the CPU decoders refuse as truncated where a device
    decoder may fill the missing rows with gray without a word (bytes after the marker: the CPU decodes it)."""
    return is_jpeg(data) and ends_complete(data) and jpeg_components(data) in (1, 3)


def _decode_jpegs(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """``decode_jpeg`` on ``device`` in calls of at most ``DEVICE_DECODE_BYTES``; ``None`` where the
    device decoder rejects an image (a failed call is retried image by image)."""
    out: list[torch.Tensor | None] = []
    start = 0
    while start < len(datas):
        stop, size = start, 0
        while stop < len(datas) and (stop == start or size + datas[stop].numel() <= DEVICE_DECODE_BYTES):
            size += datas[stop].numel()
            stop += 1
        group = datas[start:stop]
        try:
            out.extend(decode_jpeg(group, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            for d in group:
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
        start = stop
    return out


def decode_batch(
    datas: Sequence[torch.Tensor], names: Sequence[str | Path], dc: DataConfig, device: torch.device | str
) -> torch.Tensor:
    """Decode and resize a batch of encoded images on ``device``; uint8 (B, 3, h, w) on the CPU.

    JPEGs are decoded together by ``decode_jpeg`` on the device; other formats, CMYK JPEGs and any JPEG
    the device decoder rejects are decoded on the CPU as :func:`read_rgb` does and moved there.
    """
    device = torch.device(device)
    for d, name in zip(datas, names):
        _header(d, name)  # a decompression bomb is refused before any decoder sees it
    jpeg = [i for i, d in enumerate(datas) if _for_device_decoder(d)]
    decoded: dict[int, torch.Tensor | None] = dict(zip(jpeg, _decode_jpegs([datas[i] for i in jpeg], device)))
    out = []
    for i, data in enumerate(datas):
        img = decoded.get(i)
        if img is None:
            if i in decoded:
                log.debug("device decoder rejected %s; decoding it on the CPU", names[i])
            img = decode_rgb(data, names[i]).to(device)
        out.append(apply_geometry(img, dc))
    if not out:
        return torch.empty((0, 3, *dc.image_size), dtype=torch.uint8)
    return torch.stack(out).cpu()
