"""imagenet_p: stability metrics against the reference evaluation loop, both data paths end to end,
baseline normalisation, and a real model (the generated frames: test_imagenet_p_frames.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import rankdata
from torch import nn

import robustbench_vit as rbvit
from robustbench_vit.metrics.stability import flip_probability, top5_distance, top5_indices
from robustbench_vit.models.loading import wrap_module
from robustbench_vit.perturbations import sequences as seq
from tests.helpers import IMAGENET_SAMPLES, needs_effnet, needs_imagenet
from tests.test_imagenet_p_frames import _canvas, _ext

# --- metrics: the reference's flip_prob / ranking_dist, restated --------------------------------------
CUM = np.cumsum(np.asarray([0] + [1] * 5 + [0] * (999 - 5)))


def _ref_dist(sigma: np.ndarray) -> float:
    return float(np.sum(np.abs(CUM[:5] - CUM[sigma - 1][:5])))


def _ref_metrics(logits: np.ndarray, noise: bool, difficulty: int) -> tuple[float, float]:
    """(flip probability, top-5 distance) over videos, as ImageNet-P/test.py computes them."""
    step = 1 if noise else difficulty
    fp = t5 = 0.0
    for vid in logits:  # (frames, classes)
        preds = vid.argmax(1)
        ranks = [rankdata(-f, method="ordinal").astype(np.int64) for f in vid]
        flips, dists = [], []
        for i in range(step):
            prev_pred, perm1 = preds[i], ranks[i]
            inv = np.argsort(perm1)
            for pred, rank in zip(preds[i::step][1:], ranks[i::step][1:]):
                flips.append(int(prev_pred != pred))
                dists.append(_ref_dist(rank[inv]))
                if not noise:
                    prev_pred, perm1 = pred, rank
                    inv = np.argsort(perm1)
        fp += np.mean(flips) / len(logits)
        t5 += np.mean(dists) / len(logits)
    return fp, t5


@pytest.mark.parametrize("noise, difficulty", [(True, 1), (False, 1), (False, 2), (False, 3)])
def test_stability_metrics_match_the_reference_loop(noise, difficulty):
    rng = np.random.default_rng(difficulty + 10 * noise)
    base = rng.normal(size=(6, 1, 1000)) * 2
    logits = np.round(base + rng.normal(size=(6, 31, 1000)) * 0.6, 1)  # rounded: ties in the ranks
    fp_ref, t5_ref = _ref_metrics(logits, noise, difficulty)
    t = top5_indices(torch.from_numpy(logits).permute(1, 0, 2))  # (frames, videos, 5)
    stride = 1 if noise else difficulty
    assert float(flip_probability(t, noise, stride).mean()) == pytest.approx(fp_ref, abs=1e-12)
    assert float(top5_distance(t, noise, stride).mean()) == pytest.approx(t5_ref, abs=1e-12)


def test_a_model_that_never_changes_its_mind_is_perfectly_stable():
    logits = top5_indices(torch.randn(1, 4, 1000).expand(31, 4, 1000))
    for noise in (True, False):
        assert (
            float(flip_probability(logits, noise).max()) == 0
            and float(top5_distance(logits, noise).max()) == 0
        )


# --- the suite end to end ---------------------------------------------------------------------------
class _Tiny(nn.Module):
    """A deterministic 1000-way linear classifier over 8x8-pooled pixels (a stand-in with real sensitivity)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(1000, 3 * 64, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1) @ self.w.T


PRE = {
    "input_size": (3, 224, 224),
    "crop_pct": 0.875,
    "interpolation": "bilinear",
    "mean": (0.5,) * 3,
    "std": (0.25,) * 3,
}


def _write_videos(root: Path, n_per: int = 2) -> Path:
    """The released layout: <type>/<wnid>/<name>.mp4, frames from generated sequences (lossless-ish H.264)."""
    import av

    wnids = sorted(p.name for p in IMAGENET_SAMPLES.iterdir())[:n_per]
    for p in seq.SEQUENCES:
        for w in wnids:
            img = T.Resize(256)(Image.open(next((IMAGENET_SAMPLES / w).iterdir())).convert("RGB"))
            frames = seq.generate(p, _canvas(img), _ext(img), torch.Generator().manual_seed(1))[:, 0]
            out = root / p / w / f"{w}_seq.mp4"
            out.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(out), "w") as box:
                stream = box.add_stream("libx264", rate=1)
                stream.width = stream.height = 224
                stream.pix_fmt = "yuv444p"
                stream.options = {"crf": "0"}
                for f in frames:
                    arr = (f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                    box.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
                box.mux(stream.encode())
    return root


@needs_imagenet
def test_carried_extent_is_where_the_cache_puts_each_image(tmp_path):
    """The suite's canvas (decoded by the image cache) holds each image exactly at the extent computed from
    the file's size: black outside it, the image's own pixels (as torchvision places them) inside."""
    from robustbench_vit.data.cache import ImageCache
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.suites import make_suite
    from robustbench_vit.suites.imagenet_p import image_extents

    _, ds = open_dataset(str(IMAGENET_SAMPLES))
    wide = [i for i, it in enumerate(ds.items) if it.split("/")[0] in ("n04332243", "n01748264", "n04238763")]
    idx = np.asarray(sorted(set(range(0, len(ds), 97)) | set(wide)))
    model = wrap_module(_Tiny(), preprocessing=PRE)
    cache = ImageCache(ds, make_suite("imagenet_p", {}).data_config(model), tmp_path / "c")
    cache.ensure(idx)
    canvas = cache.batch(idx)
    for c, (top, left, h, w), i in zip(canvas, image_extents(ds, idx.tolist()).long().tolist(), idx):
        inside = torch.zeros(c.shape[-2:], dtype=torch.bool)
        inside[max(top, 0) : top + h, max(left, 0) : left + w] = True
        assert not c[:, ~inside].any(), ds.items[i]
        ref = TF.pil_to_tensor(T.Resize(256)(Image.open(ds.root / ds.items[i]).convert("RGB")))
        assert tuple(ref.shape[-2:]) == (h, w)
        rows, cols = int(inside.any(1).sum()), int(inside.any(0).sum())
        window = ref[:, max(-top, 0) : max(-top, 0) + rows, max(-left, 0) : max(-left, 0) + cols]
        assert (c[:, inside].float() - window.reshape(3, -1).float()).abs().mean() < 2.0, ds.items[i]


@needs_imagenet
def test_files_and_generated_paths_agree_and_baseline_normalises(tmp_path):
    pytest.importorskip("av")
    root = _write_videos(tmp_path / "imagenet-p")
    net = _Tiny()
    kw = dict(preprocessing=PRE, progress=False, batch_size=62)
    files = rbvit.evaluate(
        net, "imagenet_p", data=str(root), suite_params={"source": "files"}, name="tiny", **kw
    )
    cells = files[~files.condition.str.startswith("summary")]
    assert len(cells) == 20 and set(cells.n) == {2}
    # the decoded videos are the frames written (H.264 at crf 0 in 4:4:4 loses only the colour rounding)
    from robustbench_vit.suites.imagenet_p import read_video

    video = sorted((root / "rotate").glob("*/*.mp4"))[0]
    frames = read_video(video).float() / 255
    img = T.Resize(256)(Image.open(next((IMAGENET_SAMPLES / video.parent.name).iterdir())).convert("RGB"))
    written = seq.generate("rotate", _canvas(img), _ext(img), torch.Generator().manual_seed(1))[:, 0]
    assert frames.shape == written.shape and float((frames - written).abs().mean()) * 255 < 1.0
    # the suite's numbers are the stability metrics of the network's logits on those frames
    wrapped = wrap_module(net, preprocessing=PRE)
    for c in ("rotate/d=1", "gaussian_noise/d=1"):
        p = c.split("/")[0]
        logits = torch.stack(
            [wrapped(read_video(v).float() / 255) for v in sorted((root / p).glob("*/*.mp4"))], 1
        )
        logits = top5_indices(logits)
        noise = seq.SEQUENCES[p].noise
        got = cells.set_index(["condition", "metric"]).value
        assert got[(c, "flip_probability")] == pytest.approx(float(flip_probability(logits, noise).mean()))
        assert got[(c, "top5_distance")] == pytest.approx(float(top5_distance(logits, noise).mean()))
    # baseline: the same network saved under the baseline's name gives FR = 1 for every type, mFR = 1
    rbvit.evaluate(
        net,
        "imagenet_p",
        data=str(root),
        suite_params={"source": "files"},
        name="alexnet",
        out=str(tmp_path / "base"),
        **kw,
    )
    norm = rbvit.evaluate(
        net, "imagenet_p", data=str(root), name="tiny", **kw,
        suite_params={"source": "files", "baseline": str(tmp_path / "base")},
    )  # fmt: skip
    v = norm.set_index(["condition", "metric"]).value
    fr = norm[norm.metric == "flip_rate"]
    assert len(fr) == sum(1 for c in cells.itertuples() if c.metric == "flip_probability" and c.value > 0)
    assert np.allclose(fr.value, 1.0)
    if len(fr) == 10:
        assert v[("summary/mfr", "mfr")] == pytest.approx(1.0)


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_a_real_model_flips_more_under_stronger_noise():
    df = rbvit.evaluate(
        "efficientnet_lite0",
        "imagenet_p",
        data=str(IMAGENET_SAMPLES),
        limit=4,
        batch_size=124,
        progress=False,
        suite_params={"perturbations": "gaussian_noise,translate", "difficulties": "1,3"},
    )
    v = df.set_index(["condition", "metric"]).value
    weak, strong = (
        v[("gaussian_noise/d=1", "flip_probability")],
        v[("gaussian_noise/d=3", "flip_probability")],
    )
    assert 0 <= weak <= strong < 0.6
    assert v[("gaussian_noise/d=1", "top5_distance")] < v[("gaussian_noise/d=3", "top5_distance")]
    # translation by 1 px flips a trained network rarely; by 3 px (stride 3) more often
    assert v[("translate/d=1", "flip_probability")] <= v[("translate/d=3", "flip_probability")] < 0.5


def test_the_released_videos_key_their_runs_by_the_decoder_that_reads_them():
    """The released MP4s are decoded by PyAV (its FFmpeg converts the frames to RGB): its version is part
    of a files run's identity, so an upgrade recomputes; generated sequences use torch alone."""
    from robustbench_vit.suites import make_suite

    files = make_suite("imagenet_p", {"source": "files"}).identity()
    assert set(files["libraries"]) == {"av"}
    assert "libraries" not in make_suite("imagenet_p").identity()


def test_released_layout_errors_name_the_folder(tmp_path):
    from robustbench_vit.errors import DataError

    kw = dict(preprocessing=PRE, progress=False, suite_params={"source": "files"})
    with pytest.raises(DataError, match="ImageNet-P folder not found"):
        rbvit.evaluate(_Tiny(), "imagenet_p", data=str(tmp_path / "missing"), **kw)
    (tmp_path / "p" / "rotate").mkdir(parents=True)
    with pytest.raises(DataError, match="no <wnid>/\\*.mp4 sequences"):
        rbvit.evaluate(_Tiny(), "imagenet_p", data=str(tmp_path / "p"), **kw)
    (tmp_path / "q" / "zebra").mkdir(parents=True)
    with pytest.raises(DataError, match="has none of the folders"):
        rbvit.evaluate(_Tiny(), "imagenet_p", data=str(tmp_path / "q"), **kw)


@needs_imagenet
def test_the_baseline_is_found_by_its_typed_name_and_must_share_the_images(tmp_path):
    """The documented AlexNet run records ``alexnet.tv_imagenet1k_v1``; ``baseline_model=alexnet`` finds it.
    A baseline computed on other images (or another seed) is refused, never used to normalise."""
    net = _Tiny()
    kw = dict(preprocessing=PRE, progress=False, batch_size=62, data=str(IMAGENET_SAMPLES))
    params = {"perturbations": "gaussian_noise,rotate"}
    rbvit.evaluate(
        net,
        "imagenet_p",
        name="alexnet.tv_imagenet1k_v1",
        out=str(tmp_path / "base"),
        limit=2,
        suite_params=params,
        **kw,
    )
    norm = rbvit.evaluate(
        net,
        "imagenet_p",
        name="tiny",
        limit=2,
        suite_params={**params, "baseline": str(tmp_path / "base")},
        **kw,
    )
    assert (norm.metric == "flip_rate").any() or (norm.metric == "top5_distance_rate").any()
    from robustbench_vit.errors import DataError

    with pytest.raises(DataError, match="other images or another seed"):
        rbvit.evaluate(
            net,
            "imagenet_p",
            name="tiny",
            limit=3,
            suite_params={**params, "baseline": str(tmp_path / "base")},
            **kw,
        )
    with pytest.raises(DataError, match="other images or another seed"):
        rbvit.evaluate(
            net,
            "imagenet_p",
            name="tiny",
            limit=2,
            seed=1,
            suite_params={**params, "baseline": str(tmp_path / "base")},
            **kw,
        )


@needs_imagenet
def test_a_baseline_of_two_weights_under_one_name_is_refused_and_the_rates_name_theirs(tmp_path):
    """The baseline folder holds rows of two different models stored under the baseline's name (a
    checkpoint evaluated as ``alexnet``) on the same images and seed: the normalisation took the cells
    seen last from either, a mix of two models. It is refused; with one model the rate rows name the
    baseline weights they were normalised by."""
    from robustbench_vit.errors import DataError

    kw = dict(preprocessing=PRE, progress=False, batch_size=62, data=str(IMAGENET_SAMPLES), limit=2)
    params = {"perturbations": "gaussian_noise"}
    base = dict(name="alexnet.tv_imagenet1k_v1", out=str(tmp_path / "base"), suite_params=params)
    published = rbvit.evaluate(_Tiny(), "imagenet_p", **base, **kw)
    run = {**params, "baseline": str(tmp_path / "base")}
    rates = rbvit.evaluate(_Tiny(), "imagenet_p", name="tiny", suite_params=run, **kw)
    fr = rates[rates.metric == "flip_rate"]
    assert len(fr) == 1 and fr.params.str.contains(published.weights.iloc[0], regex=False).all()
    other = _Tiny()
    with torch.no_grad():
        other.w.mul_(-1.0)
    rbvit.evaluate(other, "imagenet_p", **base, **kw)
    with pytest.raises(DataError, match="come from 2 weights or precisions"):
        rbvit.evaluate(_Tiny(), "imagenet_p", name="tiny", suite_params=run, **kw)


@needs_imagenet
def test_progress_counts_every_difficulty(tmp_path):
    """The frames of a non-noise type are computed once for all difficulties: the later difficulties still
    report their sequences as done (they showed 0/N images, 0.0 img/s)."""
    import io

    from robustbench_vit.engine.progress import LogProgress

    stream = io.StringIO()
    rbvit.evaluate(
        _Tiny(),
        "imagenet_p",
        data=str(IMAGENET_SAMPLES),
        limit=3,
        preprocessing=PRE,
        name="tiny",
        progress=LogProgress(stream, interval=0.0),
        cache_dir=str(tmp_path),
        suite_params={"perturbations": "rotate", "difficulties": "1,2,3"},
    )
    done = [ln for ln in stream.getvalue().splitlines() if "images," in ln and "done" in ln]
    assert len([ln for ln in done if "rotate/d=" in ln]) == 3 and not any(" 0/3 images" in ln for ln in done)
