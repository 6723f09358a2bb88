"""rbvit.benchmark: RobustBench's leaderboards in one call, on its image lists and budgets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import robustbench_vit as rbvit
from robustbench_vit.benchmarking import RES256_CROP224, THREATS
from robustbench_vit.errors import ConfigError


def _test_batch(folder):
    """A CIFAR-10 python test batch of 10,000 images (the layout RobustBench's CIFAR-10 list indexes)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(
            {
                b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
                b"labels": rng.integers(0, 10, 10000).tolist(),
            },
            f,
        )
    return folder


def test_benchmark_runs_robustbench_protocol_on_its_first_images(tmp_path, cifar_card):
    pytest.importorskip("pyautoattack")
    data = _test_batch(tmp_path / "cifar")
    quick = {"n_iter": 2, "square_queries": 20}  # a quick look: rows say standard-reduced
    res = rbvit.benchmark(
        str(cifar_card),
        "Linf",
        dataset="cifar10",
        data=str(data),
        n_examples=12,
        batch_size=12,
        cache_dir=str(tmp_path / "c"),
        suite_params=quick,
    )
    rows = res["rows"]
    assert (
        res["eps"] == "8/255" and res["n"] == 12 and 0 <= res["robust_accuracy"] <= res["clean_accuracy"] <= 1
    )
    assert set(rows.condition[rows.metric == "robust_accuracy"].str.split("/after=").str[0]) == {
        "linf/eps=8/255/standard-reduced"
    }
    assert rows.data_root.iat[0] == str(
        Path(data).resolve()
    )  # the first 12 items of RobustBench's list: test/00000..00011
    assert sorted(rows.n_images.unique()) == [12]


def test_benchmark_knows_the_leaderboards():
    assert THREATS[("imagenet", "Linf")][1]["eps"] == "4/255" and RES256_CROP224["crop_pct"] == 0.875
    with pytest.raises(ConfigError, match="no imagenet/L2 leaderboard"):
        rbvit.benchmark("timm:test_vit", "L2", dataset="imagenet")


def test_benchmark_follows_the_protocols_of_the_robustbench_cards():
    """rbvit.benchmark and the RobustBench paper cards run one protocol: the same suite parameters, shipped
    image list and preprocessing (each RobustBench model's own transform for L-inf, never replaced by
    Res256Crop224; the 5,000-image list resized to 224 for ImageNet-C, RobustBench's 'Res224')."""
    from robustbench_vit.benchmarking import _is_robustbench_model
    from robustbench_vit.published.cards import load_card

    linf = load_card("robustbench-imagenet-linf")
    for p in linf.protocols.values():
        suite, params, subset = THREATS[("imagenet", "Linf")]
        assert p.suite == suite and p.subset == subset and p.preprocessing == "model"
        assert {k: p.params[k] for k in params} == params
    assert all(_is_robustbench_model(m) for m in linf.models())
    assert not _is_robustbench_model("deit_s")  # a zoo model gets RobustBench's default Res256Crop224
    suite, params, subset = THREATS[("imagenet", "corruptions")]
    for p in load_card("robustbench-imagenet-corruptions").protocols.values():
        assert p.suite == suite and p.subset == subset
        assert p.params["preprocessing"] == params["preprocessing"] == "resize"
