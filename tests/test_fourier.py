"""Fourier basis, noise and filtering invariants (Yin et al. 2019; Paul & Chen 2022), and the suites end to end."""

import math
import subprocess
import sys

import pytest
import torch

from robustbench_vit.perturbations.fourier import (
    fourier_basis,
    fourier_noise,
    frequency_filter,
    half_plane_frequencies,
)
from robustbench_vit.storage.reading import load_results
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_effnet, needs_imagenet

FREQS = [(0, 0), (1, 0), (0, 3), (3, 5), (-7, 2), (15, -15), (-16, 0), (-16, -16)]


def test_basis_unit_norm_real_and_single_frequency():
    b = fourier_basis(FREQS, (32, 32)).double()
    assert torch.allclose(b.flatten(1).norm(dim=1), torch.ones(len(FREQS), dtype=torch.float64), atol=1e-6)
    for (u, v), img in zip(FREQS, b):
        spec = torch.fft.fft2(img)
        energy = spec.abs() ** 2
        support = {(int(i), int(j)) for i, j in (energy > 1e-9 * energy.sum()).nonzero()}
        assert support == {(u % 32, v % 32), (-u % 32, -v % 32)}, (u, v)
        assert torch.allclose(img, torch.fft.ifft2(spec).real, atol=1e-6)


def test_basis_is_the_expected_cosine():
    b = fourier_basis([(2, 3)], (16, 16))[0].double()
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    ref = torch.cos(2 * math.pi * (2 * y / 16 + 3 * x / 16)).double()
    assert torch.allclose(b, ref / ref.norm(), atol=1e-6)


def _reference_basis(u: int, v: int, size: int) -> torch.Tensor:
    """The reference's basis image (FourierHeatmap, the code Paul & Chen 2022 ran): a one-hot real spectrum on
    the half plane rfft keeps (rows ``u mod H``, columns ``0..W//2``), inverted by ``irfftn`` and L2-normalised.
    Restated independently; (u, v) with v < 0 is its mirror (-u, -v), the same cosine."""
    if v < 0 or (v == 0 and u < 0):
        u, v = -u, -v
    spectrum = torch.zeros(size, size // 2 + 1, dtype=torch.float64)
    spectrum[u % size, v] = 1.0
    basis = torch.fft.irfftn(spectrum, s=(size, size), dim=(-2, -1))
    return basis / basis.norm()


@pytest.mark.parametrize("size, stride", [(32, 1), (224, 9)])
def test_basis_and_noise_are_the_reference_loops(size, stride):
    """Every basis image rbvit evaluates equals the reference's (one-hot spectrum through ``irfftn``), and its
    perturbation is the reference's ``AddFourierNoise``: ``clamp(x + eps * r_c * U, 0, 1)`` with one sign per
    image and channel, restated here with rbvit's drawn signs."""
    freqs = half_plane_frequencies(15 if size == 32 else 31, stride)
    ours = fourier_basis(freqs, (size, size)).double()
    for (u, v), img in zip(freqs, ours):
        torch.testing.assert_close(img, _reference_basis(u, v, size), atol=1e-6, rtol=0, msg=f"{(u, v)}")
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    eps = 4.0 if size == 32 else 15.7
    pick = ours[:: max(1, len(ours) // 4)].float()
    out = fourier_noise(x, pick, eps=eps, generator=torch.Generator().manual_seed(2)).view(
        len(pick), *x.shape
    )
    unclamped = fourier_noise(x, pick, eps=eps, generator=torch.Generator().manual_seed(2), clamp=False)
    for k, basis in enumerate(pick):
        delta = unclamped.view(len(pick), *x.shape)[k] - x
        signs = torch.sign((delta * basis).sum(dim=(-2, -1)))  # (images, channels): the draws, one each
        assert set(signs.unique().tolist()) <= {-1.0, 1.0}
        reference = torch.clamp(x + eps * signs[..., None, None] * basis, min=0.0, max=1.0)
        torch.testing.assert_close(out[k], reference, atol=1e-6, rtol=0)


def test_half_plane_covers_each_mirror_pair_once():
    f = half_plane_frequencies(15)
    assert len(f) == (31 * 31 + 1) // 2 and (0, 0) in f
    full = set(f) | {(-u, -v) for u, v in f}
    assert full == {(u, v) for u in range(-15, 16) for v in range(-15, 16)}
    assert len(half_plane_frequencies(31, stride=8)) == (7 * 7 + 1) // 2


def test_noise_has_norm_eps_per_channel_and_independent_signs():
    x = torch.full((4, 3, 32, 32), 0.5)
    basis = fourier_basis([(3, 5), (1, 1)], (32, 32))
    out = fourier_noise(x, basis, eps=4.0, generator=torch.Generator().manual_seed(0), clamp=False)
    assert out.shape == (8, 3, 32, 32)
    delta = (out - 0.5).view(2, 4, 3, -1)
    assert torch.allclose(delta.norm(dim=-1), torch.full((2, 4, 3), 4.0), atol=1e-4)
    signs = torch.sign((delta * basis.view(2, 1, 1, -1)).sum(-1))
    assert (signs == 1).any() and (signs == -1).any()
    clamped = fourier_noise(x, basis, eps=4.0, generator=torch.Generator().manual_seed(0))
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_filter_identities_and_complement():
    x = torch.rand(2, 3, 32, 32)
    diag = math.hypot(32, 32)
    assert torch.allclose(frequency_filter(x, kind="low", radius=diag, clamp=False), x, atol=1e-5)
    assert torch.allclose(frequency_filter(x, kind="high", radius=0, clamp=False), x, atol=1e-5)
    for soft in (False, True):
        lo = frequency_filter(x, kind="low", radius=5, soft=soft, clamp=False)
        hi = frequency_filter(x, kind="high", radius=5, soft=soft, clamp=False)
        assert torch.allclose(lo + hi, x, atol=1e-5)
    bp = frequency_filter(x, kind="band_pass", radius=3, radius2=8, clamp=False)
    bs = frequency_filter(x, kind="band_stop", radius=3, radius2=8, clamp=False)
    assert torch.allclose(bp + bs, x, atol=1e-5)
    low = frequency_filter(x, kind="low", radius=1)  # DC only: every pixel is the channel mean
    assert torch.allclose(low, x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-5)


@needs_cifar
def test_full_cifar_heatmap_through_cli(tmp_path, cifar_card):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustbench_vit.cli.commands",
            "eval",
            "-m",
            str(cifar_card),
            "-s",
            "fourier_heatmap",
            "--data",
            str(CIFAR10_TEST),
            "--limit",
            "10",
            "-b",
            "640",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    df = load_results(tmp_path)
    err = df[df.metric == "error"]
    assert len(err) == 31 * 31 and set(err.u) == set(range(-15, 16)) and set(err.v) == set(range(-15, 16))
    assert (err.eps == 4.0).all() and (err.n == 10).all()
    mirrored = err.set_index(["u", "v"])["value"]
    assert all(mirrored[(u, v)] == mirrored[(-u, -v)] for u, v in [(3, 4), (0, 7), (15, -15)])
    assert {"error_mean", "error_low_freq", "error_high_freq"} <= set(df.metric)
    png = tmp_path / "figures" / "fourier_heatmap-cifar_vit-cifar10.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


@needs_cifar
def test_filter_suite_on_cifar(tmp_path, cifar_card):
    import robustbench_vit as rbvit

    df = rbvit.evaluate(
        str(cifar_card),
        "fourier_filter",
        data=str(CIFAR10_TEST),
        limit=20,
        out=str(tmp_path),
        suite_params={"kinds": ("low", "high", "band_pass"), "radius_fractions": (1.5, 0.25, 0.5)},
    )
    top1 = df[df.metric == "top1"]
    assert len(top1) == 9 and set(top1["condition"]) >= {"low/r=0.25", "high/r=1.5", "band_pass/r=0.25"}
    clean = rbvit.evaluate(str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=20, out=None)
    # a low-pass beyond the spectrum's corner (1.5 x Nyquist > diagonal) keeps the clean accuracy
    acc = top1.set_index("condition")["value"]
    assert acc["low/r=1.5"] == clean.set_index("metric").loc["top1", "value"]
    # each kind's curve is summarised by its area over the radii run (trapezoid / span), restated here
    auc = df[df.metric == "auc"].set_index("condition")["value"]
    for kind in ("low", "high", "band_pass"):
        a, b, c = (acc[f"{kind}/r={r}"] for r in ("0.25", "0.5", "1.5"))
        assert auc[f"summary/{kind}/auc"] == pytest.approx(((a + b) / 2 * 0.25 + (b + c) / 2 * 1.0) / 1.25)
    # the board shows the low-pass curve first, radii in order, and ranks by its area
    from robustbench_vit.results.tables import render_markdown

    md = render_markdown(rbvit.build_leaderboard(str(tmp_path)))
    header = next(
        line for line in md.split("## fourier_filter")[1].splitlines() if line.startswith("| label")
    )
    cols = [c.strip() for c in header.strip("|").split("|")][2:]
    assert cols[:4] == ["summary/low/auc auc", "low/r=0.25 top1", "low/r=0.5 top1", "low/r=1.5 top1"]
    assert cols[4:6] == ["summary/high/auc auc", "high/r=0.25 top1"]
    assert "ranked by `summary/low/auc auc`" in md


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_reduced_stride_heatmap_with_real_weights(tmp_path):
    import robustbench_vit as rbvit

    df = rbvit.evaluate(
        "efficientnet_lite0",
        "fourier_heatmap",
        data=str(IMAGENET_SAMPLES),
        limit=20,
        batch_size=200,
        out=str(tmp_path),
        suite_params={"stride": 8},
    )
    err = df[df.metric == "error"]
    assert len(err) == 7 * 7 and (err.n == 20).all() and (err["params"].str.contains('"eps": 15.7')).all()
    s = df[df.condition == "summary/fourier"].set_index("metric")["value"]
    assert s["error_low_freq"] < s["error_high_freq"], (
        "a CNN is more sensitive to high frequencies (Yin et al.)"
    )
    assert (tmp_path / "figures" / "fourier_heatmap-efficientnet_lite0-imagenet-samples.png").is_file()


def test_default_eps_keeps_the_per_pixel_perturbation_at_any_resolution():
    """Yin et al.'s 15.7 at 224 px (4.0 at 32 px) scaled with the side: a unit-L2 basis at 384 px has
    224/384 of the per-pixel amplitude, so the same eps would be a 0.58x weaker perturbation."""
    from robustbench_vit.perturbations.fourier import fourier_basis
    from robustbench_vit.suites.fourier import default_eps

    assert default_eps((224, 224)) == pytest.approx(15.7) and default_eps((32, 32)) == pytest.approx(4.0)
    assert default_eps((384, 384)) == pytest.approx(15.7 * 384 / 224)
    amp = {}
    for side in (224, 384):
        basis = fourier_basis([(3, 5)], (side, side), device="cpu")
        amp[side] = default_eps((side, side)) * basis.abs().max().item()
    assert amp[384] == pytest.approx(amp[224], rel=0.02)
