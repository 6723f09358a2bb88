"""The representations suite: CKA invariants and agreement with a restated per-pair reference loop,
attention weights against timm's own (unfused) attention, block class tokens against the model's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.metrics.cka import MinibatchCKA, gram, hsic1
from robustbench_vit.models import probes
from robustbench_vit.models.loading import load_model
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_imagenet


def _feats(seed: int, n: int = 48, d: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _reference_hsic1(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. 2012, eq. (5), term by term with explicit sums."""
    n = len(k)
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    a = sum(kt[i, j] * lt[j, i] for i in range(n) for j in range(n))
    b = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    c = 2.0 / (n - 2) * sum(kt[i].sum() * lt[i].sum() for i in range(n))
    return (a + b - c) / (n * (n - 3))


def test_hsic1_matches_the_estimator_written_out():
    x, y = _feats(0, n=12), _feats(1, n=12) ** 2
    k, l = gram(x), gram(y)  # noqa: E741
    assert float(hsic1(k, l)) == pytest.approx(_reference_hsic1(k.numpy(), l.numpy()), rel=1e-10)


def test_minibatch_cka_equals_a_per_pair_reference_loop():
    """Nguyen et al.'s minibatch CKA restated pair by pair: per batch HSIC_1 of each pair and of each layer
    with itself, summed over batches, then the normalised ratio."""
    layers = [[_feats(10 * b + i) @ _feats(99, d=20)[:20] ** i for i in range(3)] for b in range(4)]
    acc = MinibatchCKA()
    for batch in layers:
        acc.update(batch)
    ours = acc.result().numpy()
    ref = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            xy = sum(float(hsic1(gram(b[i]), gram(b[j]))) for b in layers)
            xx = sum(float(hsic1(gram(b[i]), gram(b[i]))) for b in layers)
            yy = sum(float(hsic1(gram(b[j]), gram(b[j]))) for b in layers)
            ref[i, j] = xy / np.sqrt(xx * yy)
    assert np.allclose(ours, ref, rtol=1e-10)
    assert np.allclose(np.diag(ours), 1.0) and np.allclose(ours, ours.T)


def test_cka_invariances():
    x = [_feats(s) for s in range(3)]
    q, _ = torch.linalg.qr(_feats(7, n=20, d=20))
    base, turned = MinibatchCKA(), MinibatchCKA()
    for b in x:
        y = b @ _feats(8, n=20, d=20)
        base.update([b], [y])
        turned.update([b], [3.7 * (y @ q)])  # orthogonal transform and isotropic scaling of one side
    assert float(turned.result()) == pytest.approx(float(base.result()), rel=1e-9)
    stretched = MinibatchCKA()
    for b in x:
        y = b @ _feats(8, n=20, d=20)
        stretched.update([b], [y * torch.linspace(0.1, 10, 20, dtype=torch.float64)])  # not isotropic
    assert abs(float(stretched.result()) - float(base.result())) > 1e-3


@needs_imagenet
def test_vit_attention_and_block_tokens_against_timm(tmp_path):
    model = load_model("timm:test_vit", device="cpu", pretrained=False)
    from robustbench_vit.data.decode import load_image

    files = sorted(IMAGENET_SAMPLES.iterdir())[:3]
    x = torch.stack([load_image(next(f.iterdir()), model.data_config) for f in files]).float() / 255
    # timm's own attention probabilities: unfused attention, read at its dropout module
    seen: list[torch.Tensor] = []
    hooks = []
    for b in model.net.blocks:
        b.attn.fused_attn = False
        hooks.append(b.attn.attn_drop.register_forward_hook(lambda _m, args, _o: seen.append(args[0])))
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    ours = probes.attention_weights(model, x)
    assert len(ours) == len(seen) == len(model.net.blocks)
    for a, b in zip(ours, seen):
        assert torch.allclose(a, b, atol=1e-5)
    # attention distance: the Probing-ViTs loop (explicit distance matrix, prefix token dropped)
    grid, patch = model.net.patch_embed.grid_size, model.net.patch_embed.patch_size[0]
    dist = np.zeros((grid[0] * grid[1],) * 2)
    for i in range(len(dist)):
        for j in range(len(dist)):
            dist[i, j] = patch * np.hypot(i // grid[1] - j // grid[1], i % grid[1] - j % grid[1])
    w = seen[0][:, :, 1:, 1:].double().numpy()
    expected = (w * dist).sum(-1).mean(-1).mean(0)
    got = probes.mean_attention_distance(model, ours)[0].numpy() / len(x)
    assert np.allclose(got, expected, rtol=1e-6)
    # the last block's class token through norm + head is the model's own output
    assert torch.allclose(probes.block_logits(model, x)[-1], logits, atol=1e-4)


@needs_imagenet
def test_suite_rows_on_a_vit():
    df = rbvit.evaluate(
        "timm:test_vit",
        "representations",
        data=str(IMAGENET_SAMPLES),
        limit=24,
        batch_size=12,
        pretrained=False,
        progress=False,
    )
    cka = df[df.metric == "cka"]
    layers = [f"blocks.{i}" for i in range(6)]
    assert len(cka) == 36 and set(df.n) == {24}
    m = cka.assign(a=cka.condition.str.split("|").str[0].str[4:], b=cka.condition.str.split("|").str[1])
    mat = m.pivot_table(index="a", columns="b", values="value").loc[layers, layers].to_numpy()
    assert np.allclose(np.diag(mat), 1.0) and np.allclose(mat, mat.T, atol=1e-9)
    assert (df.metric == "attention_distance").sum() == 6 * 2
    ad = df[df.metric == "attention_distance"].value
    assert (ad > 0).all() and (ad < 160 * np.sqrt(2)).all()  # pixels within the 160 px input
    blocks = df[df.condition.str.startswith("block_accuracy/") & (df.metric == "top1")]
    assert len(blocks) == 6


@needs_cifar
def test_cka_between_two_cifar_models_and_a_cnn_without_attention(cifar_card, cifar_cnn_card, caplog):
    caplog.set_level("INFO", logger="robustbench_vit")
    df = rbvit.evaluate(
        str(cifar_cnn_card),
        "representations",
        data=str(CIFAR10_TEST),
        limit=32,
        batch_size=16,
        progress=False,
        suite_params={"compare_with": str(cifar_card)},
    )
    assert set(df.condition.str.split("/").str[0]) <= {"cka", "summary"}
    assert "attention_distance skipped" in caplog.text
    cross = df[df.condition.str.startswith("cka/vs=")]
    assert len(cross) > 0 and cross.value.between(0, 1 + 1e-9).all()
    assert {"layer_a", "layer_b", "model_b"} <= set(__import__("json").loads(cross.params.iloc[0]))


@needs_imagenet
def test_a_checkpoint_without_a_classifier_is_analysed_and_never_scored(tmp_path, caplog):
    """timm's DINO and MAE tags have no classifier (``num_classes = 0``: their outputs are features): the
    label space comes from timm's pretrained config as the preprocessing does, so CKA and attention
    distance run on them, block accuracy is skipped, and a suite that scores predictions is refused in one
    line instead of reading 384 features as 1000 logits."""
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.models.names import resolve_spec

    assert resolve_spec("timm:vit_small_patch16_224.dino").label_space == "none"
    assert resolve_spec("vit_base_patch16_224.mae").label_space == "none"
    assert resolve_spec("timm:vit_small_patch16_224.augreg_in1k").label_space == "imagenet1k"
    kw = dict(data=str(IMAGENET_SAMPLES), limit=8, batch_size=4, pretrained=False, progress=False)
    kw.update(cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "out"))
    with caplog.at_level("INFO", logger="robustbench_vit.suites.representations"):
        df = rbvit.evaluate("timm:vit_small_patch16_224.dino", "representations", **kw)
    assert set(df.metric) >= {"cka", "attention_distance"} and set(df.n) == {8}
    assert not df.condition.str.startswith("block_accuracy").any()
    assert "block_accuracy skipped" in caplog.text
    with pytest.raises(ConfigError, match=r"has no classifier .* suite clean scores class predictions"):
        rbvit.evaluate("timm:vit_small_patch16_224.dino", "clean", **kw)
    with pytest.raises(
        ConfigError, match=r"model vit_small_patch16_224.dino.random has no classifier .* suite transfer"
    ):
        rbvit.evaluate(  # a suite's own model (the source it crafts on) is refused alike
            "timm:test_vit",
            "transfer",
            suite_params={"source": "timm:vit_small_patch16_224.dino", "source_pretrained": False},
            **kw,
        )
    with pytest.raises(ConfigError, match="representations: none of block_accuracy applies"):
        rbvit.evaluate(
            "timm:vit_small_patch16_224.dino",
            "representations",
            suite_params={"analyses": "block_accuracy"},
            **kw,
        )


@needs_imagenet
def test_attention_distance_on_a_vit_fed_another_size_than_it_was_built_for(tmp_path):
    """timm's ``dynamic_img_size`` ViTs (test_vit, built for 160 px) embed the grid of the input they are fed:
    at ``--img-size 224`` the patch grid is 14 x 14, not the 10 x 10 it was built with (the analysis was a
    "196 patch tokens, expected 100" error), and the distances are those of a 224 px input."""
    kw = dict(data=str(IMAGENET_SAMPLES), limit=4, batch_size=4, pretrained=False, progress=False)
    kw.update(cache_dir=str(tmp_path / "cache"), suite_params={"analyses": "attention_distance"})
    model = load_model("timm:test_vit", device="cpu", pretrained=False)
    assert probes.patch_grid(model) == (10, 10)
    wide = rbvit.evaluate("timm:test_vit", "representations", override_preprocessing={"img_size": 224}, **kw)
    built = rbvit.evaluate("timm:test_vit", "representations", **kw)
    far = wide.query("metric == 'attention_distance'").value.mean()
    near = built.query("metric == 'attention_distance'").value.mean()
    # near-uniform attention of random weights: about the mean patch distance of each grid (scaled with it)
    assert 0.6 * 224 / 160 < far / near < 1.2 * 224 / 160
