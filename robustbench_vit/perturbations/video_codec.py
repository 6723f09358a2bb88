"""The storage step of ``make_imagenet_p.py``: every sequence H.264-coded as the released MP4s were.

The script wrote a sequence's frames as PNGs and called ``ffmpeg -r 1 -framerate 1 -i img%d.png
-vcodec libx264 ... -preset veryslow``: ``-tune grain`` (x264's default CRF 23) for the noise types,
``-crf 20`` for the others. ffmpeg codes RGB frames in ``yuv444p`` with libx264 (its choice for RGB
input), BT.601 limited range, and the evaluation decodes them back to RGB. The same round trip here runs
through PyAV (its bundled FFmpeg and x264), in memory; x264 writes its settings into the stream, where the
tests read them. Two settings are added for reproducibility, neither in the script's call: x264's default
CPU-specific code (MB-tree's SIMD float paths) codes the same frames differently from one run to the next
(measured with PyAV 18.1: most 224 px noise sequences, their round trips up to 38 levels apart, 33 dB
from each other), and its frame threads follow the machine's core count; ``cpu-independent`` (x264's
canonical algorithms) and one thread give the same frames on every run and machine. Sequences are coded
in parallel instead (PyAV releases the GIL). The PyAV version and :func:`h264_settings` key a run.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from robustbench_vit.errors import ConfigError

__all__ = [
    "H264_OPTIONS",
    "h264_available",
    "h264_encode",
    "h264_round_trip",
    "h264_round_trips",
    "h264_settings",
]

#: what makes the coding a function of the frames alone (see the module docstring)
REPRODUCIBLE = {"threads": "1", "x264-params": "cpu-independent=1"}
#: libx264 options of make_imagenet_p.py's ffmpeg calls, by whether the type is a noise type
H264_OPTIONS = {
    True: {"preset": "veryslow", "tune": "grain", **REPRODUCIBLE},
    False: {"preset": "veryslow", "crf": "20", **REPRODUCIBLE},
}
#: frames per second of the released sequences (``-r 1 -framerate 1``)
FRAME_RATE = 1
PIXEL_FORMAT = "yuv444p"


def h264_available() -> None:
    """Refuse, in one line, a machine where PyAV or its libx264 encoder is missing."""
    try:
        import av
    except ImportError:
        raise ConfigError("codec=h264 codes the sequences with PyAV's libx264: pip install av") from None
    if "libx264" not in av.codecs_available:
        raise ConfigError(
            "codec=h264 needs libx264, which this PyAV's FFmpeg lacks (PyPI's av wheels carry it)"
        )


def h264_encode(frames: torch.Tensor, *, noise: bool) -> bytes:
    """One sequence (T, 3, H, W) uint8 RGB as the MP4 bytes make_imagenet_p.py's ffmpeg call writes."""
    import av

    _, _, h, w = frames.shape
    rgb = np.ascontiguousarray(frames.permute(0, 2, 3, 1).cpu().numpy())
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as box:
        stream = box.add_stream("libx264", rate=FRAME_RATE)
        stream.width, stream.height, stream.pix_fmt = w, h, PIXEL_FORMAT
        stream.options = dict(H264_OPTIONS[noise])
        for frame in rgb:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        box.mux(stream.encode())
    return buffer.getvalue()


def h264_round_trip(frames: torch.Tensor, *, noise: bool) -> torch.Tensor:
    """One sequence (T, 3, H, W) uint8 RGB, coded with the script's libx264 settings and decoded back to
    RGB (as the evaluation reads the released files): the frames its MP4 would hold."""
    import av

    with av.open(io.BytesIO(h264_encode(frames, noise=noise))) as box:
        decoded = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {len(frames)} frames")
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()


def h264_round_trips(sequences: torch.Tensor, *, noise: bool) -> torch.Tensor:
    """(T, B, 3, H, W) uint8 sequences, each through :func:`h264_round_trip`, coded in parallel threads."""
    count = sequences.shape[1]
    with ThreadPoolExecutor(max(1, min(count, os.cpu_count() or 1))) as pool:
        coded = list(pool.map(lambda b: h264_round_trip(sequences[:, b], noise=noise), range(count)))
    return torch.stack(coded, 1)


def h264_settings() -> str:
    """The coding of every sequence as one line (the noise types' and the others'), recorded with a run."""
    return "; ".join(
        f"{'noise' if noise else 'others'}: " + " ".join(f"{k}={v}" for k, v in H264_OPTIONS[noise].items())
        for noise in (True, False)
    )
