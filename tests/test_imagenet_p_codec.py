"""imagenet_p ``codec=h264``: generated sequences coded as make_imagenet_p.py's ffmpeg call coded the
released MP4s. The settings are read back from the stream itself (x264 writes its options into it, and
ffmpeg's choices show in the stream: yuv444p, 1 frame per second), the round trip is deterministic (with
x264's canonical algorithms and one thread, which the script did not ask for) and lossy, and a run says how its sequences were coded: its rows, its identity, and the baseline it accepts."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.errors import ConfigError, DataError
from tests.helpers import IMAGENET_SAMPLES, needs_imagenet
from tests.test_imagenet_p import PRE, _Tiny

av = pytest.importorskip("av")
pytestmark = pytest.mark.skipif("libx264" not in av.codecs_available, reason="PyAV without libx264")

from robustbench_vit.perturbations.video_codec import h264_encode, h264_round_trip  # noqa: E402


def _sequence(frames: int = 6, noise: bool = True) -> torch.Tensor:
    """A smooth image and frames of it: Poisson noise (shot_noise's) or a 1 px shift per frame."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80]
    base = np.stack([128 + 90 * np.sin(xx / 9 + c) * np.cos(yy / 7) for c in range(3)], -1) / 255
    out = [base]
    for i in range(1, frames):
        out.append(np.clip(rng.poisson(base * 300) / 300, 0, 1) if noise else np.roll(base, i, axis=1))
    return torch.from_numpy(np.uint8(255 * np.stack(out))).permute(0, 3, 1, 2).contiguous()


def _x264_options(data: bytes) -> dict[str, str]:
    found = re.search(rb"x264 - core \d+.*? options: ([^\x00]+)", data)
    assert found, "no x264 settings in the stream"
    return dict(kv.split("=", 1) for kv in found.group(1).decode().split())


@pytest.mark.parametrize("noise", [True, False])
def test_the_stream_carries_the_scripts_settings(noise):
    """``-preset veryslow`` with ``-tune grain`` (CRF 23) for the noise types and ``-crf 20`` for the others;
    yuv444p (High 4:4:4, what ffmpeg picks for RGB frames) at 1 frame per second."""
    data = h264_encode(_sequence(noise=noise), noise=noise)
    opts = _x264_options(data)
    veryslow = {"ref": "16", "subme": "10", "me": "umh", "trellis": "2", "bframes": "8", "b_adapt": "2"}
    assert {k: opts[k] for k in veryslow} == veryslow
    grain = {"deadzone": "6,6", "psy_rd": "1.00:0.25", "aq": "1:0.50"}
    assert opts["rc"] == "crf" and opts["crf"] == ("23.0" if noise else "20.0")
    assert ({k: opts[k] for k in grain} == grain) is noise
    assert opts["threads"] == opts["lookahead_threads"] == "1"  # one thread: the same frames on any machine
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv444p" and "4:4:4" in stream.codec_context.profile
        assert stream.average_rate == 1 and stream.frames == 6


@pytest.mark.parametrize("noise", [True, False])
def test_the_round_trip_is_lossy_deterministic_and_close(noise):
    frames = _sequence(noise=noise)
    coded = h264_round_trip(frames, noise=noise)
    assert coded.shape == frames.shape and coded.dtype == torch.uint8
    assert torch.equal(coded, h264_round_trip(frames, noise=noise))  # the same bits on every run
    mse = (coded.double() - frames.double()).pow(2).mean().item()
    assert mse > 0 and 10 * np.log10(255**2 / mse) > 30  # lossy, as the released files are, but close


def test_noisy_sequences_are_coded_alike_on_every_run():
    """x264's default CPU-specific code (MB-tree's SIMD float paths) coded most of these 224 px noise
    sequences differently from one run to the next, up to 38 levels apart: a fresh run's numbers were other
    numbers. With x264's canonical algorithms and one thread every coding is the same."""
    from robustbench_vit.perturbations.video_codec import h264_round_trips

    gen = torch.Generator().manual_seed(0)
    base = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 224, 224, generator=gen), 9, 1, 4)
    noisy = base + 0.05 * torch.randn(8, 4, 3, 224, 224, generator=gen)  # (T, B, ...): 4 sequences
    levels = noisy.clamp(0, 1).mul(255).round().byte()
    first = h264_round_trips(levels, noise=True)
    assert torch.equal(first, h264_round_trips(levels, noise=True))
    assert torch.equal(first[:, 2], h264_round_trip(levels[:, 2], noise=True))  # in parallel as alone


def test_files_take_no_codec_and_a_coded_run_is_keyed_by_pyav():
    from robustbench_vit.suites import make_suite

    with pytest.raises(ConfigError, match="released files are H.264 already"):
        make_suite("imagenet_p", {"source": "files", "codec": "h264"})
    from robustbench_vit.perturbations.video_codec import h264_settings

    coded = make_suite("imagenet_p", {"codec": "h264"}).identity()
    assert "av" in coded["libraries"] and coded["x264"] == h264_settings()  # how it codes keys the run
    assert "libraries" not in make_suite("imagenet_p", {}).identity()
    assert "x264" not in make_suite("imagenet_p", {}).identity()  # uncoded runs keep their key


@needs_imagenet
def test_a_coded_run_says_so_and_takes_only_a_baseline_coded_alike(tmp_path):
    """The frames the model sees are the round trip of the generated ones (a model reading the pixels
    flips otherwise); rows carry ``codec`` and the run id differs from the uncoded run's; a baseline of
    uncoded sequences is refused for a coded run, one coded alike normalises it."""
    from robustbench_vit.perturbations.video_codec import h264_settings
    from robustbench_vit.suites.imagenet_p import ImageNetP

    net = _Tiny()
    kw = dict(preprocessing=PRE, progress=False, batch_size=62, data=str(IMAGENET_SAMPLES), limit=2)
    plain = {"perturbations": "shot_noise"}
    coded = {**plain, "codec": "h264"}
    base = rbvit.evaluate(net, "imagenet_p", name="base", out=str(tmp_path / "b"), suite_params=plain, **kw)
    run = rbvit.evaluate(net, "imagenet_p", name="base", out=str(tmp_path / "c"), suite_params=coded, **kw)
    assert set(run.params.map(lambda p: json.loads(p).get("codec")).dropna()) == {"h264"}
    assert set(run.params.map(lambda p: json.loads(p).get("x264")).dropna()) == {h264_settings()}
    assert set(run.run_id) != set(base.run_id)
    with pytest.raises(DataError, match="rerun the baseline with -p codec=h264"):
        rbvit.evaluate(
            net,
            "imagenet_p",
            name="m",
            suite_params={**coded, "baseline": str(tmp_path / "b"), "baseline_model": "base"},
            **kw,
        )
    normed = rbvit.evaluate(
        net,
        "imagenet_p",
        name="m",
        suite_params={**coded, "baseline": str(tmp_path / "c"), "baseline_model": "base"},
        **kw,
    )
    assert (normed.metric == "flip_rate").any()

    frames = torch.rand(5, 2, 3, 32, 32).mul(255).round().div(255)
    want = torch.stack(
        [h264_round_trip((frames[:, b] * 255).round().byte(), noise=True) for b in range(2)], 1
    )
    assert torch.equal(ImageNetP._coded(frames, True), want.float() / 255)
