"""rbvit reproduce: the shipped paper cards validate, a card reproduces within its tolerance, a wrong value
fails with exit 9, and --dry-run names what is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_vit.cli.commands import main
from robustbench_vit.cli.reproduce import OUTSIDE_TOLERANCE
from robustbench_vit.published.cards import card_names, load_card
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_effnet, needs_imagenet


@pytest.mark.parametrize("name", card_names())
def test_every_shipped_card_validates(name):
    card = load_card(name)  # models resolve offline, suites and parameters exist, values are fractions
    assert card.citation and card.cells and all(0 <= c.value <= 1 for c in card.cells)


@pytest.mark.parametrize(
    ("protocol_extra", "model", "message"),
    [
        ('dataset = "imagenet-sketchh"', "deit_s", "imagenet-sketch"),  # did you mean
        ('subset = "robustbench-imagenet-500"', "deit_s", "no shipped subset"),
        ('preprocessing = "timm-test"', "tv_resnet50_v2", "test_input_size"),  # not a timm model
        ('preprocessing = "timm-test"', "deit_s", "test_input_size"),  # timm, but no larger test size
        ('preprocessing = "crop288"', "deit_s", "preprocessing must be one of"),
    ],
)
def test_a_card_with_a_wrong_protocol_is_a_one_line_error(tmp_path, protocol_extra, model, message):
    from robustbench_vit.errors import RbvitError

    card = tmp_path / "bad.toml"
    card.write_text(f"""
[card]
name = "bad"
title = "a card with one wrong protocol field"
citation = "tests/test_reproduce.py"

[[protocol]]
id = "p"
suite = "clean"
condition = "clean"
metric = "top1"
{protocol_extra}
image_set = "x"
images = 10
tolerance = 0.01
reason = "a test"

[[cell]]
protocol = "p"
model = "{model}"
value = 0.5
""")
    with pytest.raises(RbvitError, match=message) as e:
        load_card(str(card))
    assert "\n" not in str(e.value)


def test_list_shows_the_cards_with_their_citations():
    r = CliRunner().invoke(main, ["reproduce", "--list", "--json"])
    rows = {d["card"]: d for d in map(json.loads, r.output.splitlines())}
    assert r.exit_code == 0 and {"timm", "robustbench-imagenet-corruptions"} <= set(rows)
    assert "pytorch-image-models" in rows["timm"]["citation"] and rows["timm"]["cells"] >= 40
    assert "unaggregated_results.csv" in rows["robustbench-imagenet-corruptions"]["citation"]
    assert "model_info/imagenet/Linf" in rows["robustbench-imagenet-linf"]["citation"]


def test_dry_run_names_what_is_missing(tmp_path, monkeypatch):
    """Data folders not given and weights not cached are named per cell, nothing is downloaded or built."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    r = CliRunner().invoke(main, ["reproduce", "timm", "--models", "deit_s", "--dry-run", "--json"])
    rows = [json.loads(ln) for ln in r.output.splitlines()]
    assert r.exit_code == 0 and {d["protocol"] for d in rows} == {
        "val",
        "imagenet_a",
        "imagenet_r",
        "sketch",
        "imagenet_v2",
    }
    assert all(d["missing"].startswith("--data ") for d in rows) and all(d["gpu_minutes"] > 0 for d in rows)
    assert all("weights not cached in" in d["missing"] and "empty-hub" in d["missing"] for d in rows)
    bad = CliRunner().invoke(main, ["reproduce", "timm", "--models", "nope", "--dry-run"])
    assert bad.exit_code == 2 and "has no cells for nope" in bad.output
    assert CliRunner().invoke(main, ["reproduce", "timmm"]).exit_code == 3  # did you mean timm


@needs_imagenet
def test_dry_run_gives_a_protocol_on_a_named_dataset_only_a_folder_of_that_dataset(tmp_path):
    """A general --data runs the protocols whose dataset the folder holds; Sketch (wnid folders, like val)
    needs --data sketch=PATH or --data imagenet-sketch=PATH; ImageNet-V2's 0..999 layout is recognised, and
    a folder that is not ImageNet-A's 200 classes is not given to the ImageNet-A protocol."""
    from tests.test_data import _v2_layout

    def plan(*data):
        args = ["reproduce", "timm", "--models", "deit_s", "--dry-run", "--json"]
        r = CliRunner().invoke(main, [*args, *(a for d in data for a in ("--data", d))])
        assert r.exit_code == 0, r.output
        return {d["protocol"]: d for d in map(json.loads, r.output.splitlines())}

    rows = plan(str(IMAGENET_SAMPLES))
    assert rows["val"]["data"] == str(IMAGENET_SAMPLES) and not rows["val"]["missing"].startswith("--data")
    assert rows["sketch"]["data"] == "" and rows["sketch"]["missing"].startswith(
        "--data imagenet-sketch=PATH"
    )
    assert rows["imagenet_v2"]["data"] == "" and rows["imagenet_a"]["data"] == ""  # not ImageNet-A's classes
    rows = plan(f"imagenet-sketch={IMAGENET_SAMPLES}", str(_v2_layout(tmp_path, IMAGENET_SAMPLES)))
    assert rows["sketch"]["data"] == str(IMAGENET_SAMPLES) and rows["imagenet_v2"]["data"].endswith(
        "frequency"
    )


def _reference_top1(card_path) -> float:
    """The card's model on cifar10-test-1000, computed independently: PIL decode, timm model, safetensors."""
    import timm
    from PIL import Image
    from safetensors.torch import load_file

    from robustbench_vit.data.subset import shipped_subset_items

    spec = json.loads(card_path.read_text())
    net = timm.create_model(spec["arch"], num_classes=10, **spec["kwargs"]).eval()
    net.load_state_dict(load_file(str(card_path.parent / spec["weights"])))
    classes = sorted(p.name for p in CIFAR10_TEST.iterdir())
    items = shipped_subset_items("cifar10-test-1000")
    x = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(CIFAR10_TEST / it).convert("RGB"))) for it in items]
    )
    x = x.permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(spec["mean"]).view(1, 3, 1, 1)) / torch.tensor(spec["std"]).view(1, 3, 1, 1)
    y = torch.tensor([classes.index(it.split("/")[0]) for it in items])
    with torch.no_grad():
        pred = torch.cat([net(b).argmax(1) for b in x.split(250)])
    return float((pred == y).float().mean())


def _card(tmp_path, model, value):
    path = tmp_path / "tiny.toml"
    path.write_text(f"""
[card]
name = "tiny"
title = "a CIFAR-10 card from a reference computation"
citation = "tests/test_reproduce.py::_reference_top1 (PIL, timm, safetensors; no rbvit code)"

[[protocol]]
id = "c1000"
suite = "clean"
condition = "clean"
metric = "top1"
subset = "cifar10-test-1000"
image_set = "cifar10-test-1000"
images = 1000
data = "the CIFAR-10 test set in class folders"
tolerance = 0.001
reason = "deterministic, same images; the reference is printed to 4 digits"

[[cell]]
protocol = "c1000"
model = "{model}"
value = {value:.4f}
""")
    return path


@needs_cifar
def test_a_card_reproduces_and_a_wrong_value_fails(tmp_path, cifar_card):
    ref = _reference_top1(cifar_card)

    def run(card):  # type: ignore[no-untyped-def]
        args = [
            "--progress",
            "off",
            "reproduce",
            str(card),
            "--data",
            str(CIFAR10_TEST),
            "--out",
            str(tmp_path / "out"),
        ]
        return CliRunner().invoke(main, [*args, "--json"])

    good = run(_card(tmp_path, cifar_card, ref))
    assert good.exit_code == 0, good.output
    row = json.loads(good.output.splitlines()[0])
    assert row["verdict"] == "within" and row["same_image_set"] and abs(row["rbvit"] - ref) < 1e-3
    assert (tmp_path / "out" / "reproduce" / "tiny.parquet").is_file()
    from robustbench_vit.results.report import write_report

    page = write_report(tmp_path / "out", tmp_path / "report.html").read_text()
    assert "Published vs rbvit" in page and "1 of 1 cells within their tolerance" in page
    assert "Published values from: tests/test_reproduce.py::_reference_top1" in page
    (tmp_path / "w").mkdir()
    wrong = run(_card(tmp_path / "w", cifar_card, ref + 0.2))
    assert wrong.exit_code == OUTSIDE_TOLERANCE and "outside their tolerance" in wrong.output


@needs_effnet
@pytest.mark.slow
def test_efficientnet_lite0_on_the_shared_samples(tmp_path):
    """The must-show run: the shared-samples cell on its own images, the published ImageNet-val figure marked
    as another image set."""
    r = CliRunner().invoke(
        main,
        [
            "--progress",
            "off",
            "reproduce",
            "efficientnet-lite0",
            "--data",
            str(IMAGENET_SAMPLES),
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = {d["protocol"]: d for d in map(json.loads, r.output.splitlines())}
    assert rows["shared"]["same_image_set"] and rows["shared"]["verdict"] == "within"
    assert not rows["val"]["same_image_set"] and "other images" in rows["val"]["reason"]


def _row(
    model,
    *,
    n,
    image_set="x",
    dataset="imagenet-val",
    suite=None,
    override=None,
    size=224,
    crop=0.9,
    interpolation="bicubic",
    subset=None,
    metric="top1",
    condition="clean",
    source=None,
    weights="published sha256:0123456789abcdef",
    checkpoint=None,
):
    """One stored result row as matching reads it: the run's config JSON and its effective preprocessing."""
    from robustbench_vit.models.names import resolve_spec
    from robustbench_vit.suites import make_suite

    suite = suite or make_suite("clean")
    config = {
        "suite": suite.config(),
        "options": {"override_preprocessing": override or {}, "subset": subset, "checkpoint": checkpoint},
    }
    return {
        "suite": suite.name, "condition": condition, "metric": metric, "model": model, "dataset": dataset,
        "n_images": n, "image_set": image_set, "config": json.dumps(config), "input_size": size,
        "crop_pct": crop, "interpolation": interpolation, "source": source or resolve_spec(model).source,
        "weights": weights,
    }  # fmt: skip


def test_rows_follow_a_cards_protocol_only_with_its_config_preprocessing_and_images():
    """A row is comparable with a card's protocol only for a model of the card, with the same suite,
    condition, metric and suite configuration, the protocol's dataset and preprocessing (a run that
    overrode preprocessing the protocol leaves to the model follows no ``model`` protocol), on the card's
    image set (its content id; else its shipped id list; else its image count); and only for the card's
    model loaded from its source with its own published weights."""
    import pandas as pd

    from robustbench_vit.models.names import row_key
    from robustbench_vit.published.cards import protocol_preprocessing
    from robustbench_vit.published.matching import comparable_with
    from robustbench_vit.suites import make_suite

    lite = dict(size=224, crop=0.875, interpolation="bilinear", dataset="imagenet-samples")
    shared = "b2e410d4e9d70916"
    clean_v0 = make_suite("clean")
    object.__setattr__(clean_v0, "version", 0)  # the same suite at an older version: another protocol
    ic = make_suite("imagenet_c", {"corruptions": ["shot_noise"], "preprocessing": "resize"})
    alexnet = row_key("torchvision:alexnet")
    shot = dict(
        n=5000, source="torchvision", suite=ic, condition="shot_noise/1", dataset="imagenet-c", crop=1.0
    )
    assert protocol_preprocessing("timm-test", "convnext_b") == {"img_size": 288, "crop_pct": 1.0}
    cases = [
        (
            _row("efficientnet_lite0", n=1000, image_set="b2e410d4e9d70916", **lite),
            "efficientnet-lite0/shared",
        ),
        (_row("efficientnet_lite0", n=1000, image_set="0000000000000000", **lite), ""),  # other 1000 images
        # the card's model, but not with its published weights: a checkpoint in their place, random weights,
        # weights changed after loading, a hook on every module, or a user's card that took the model's name
        (_row("efficientnet_lite0", n=1000, image_set="b2e410d4e9d70916", checkpoint="ft.pth", **lite), ""),
        (
            _row(
                "efficientnet_lite0", n=1000, image_set=shared, weights="checkpoint:ft.pth sha256:1", **lite
            ),
            "",
        ),
        (_row("efficientnet_lite0", n=1000, image_set=shared, weights="random", **lite), ""),
        (_row("efficientnet_lite0", n=1000, image_set=shared, weights="pypi:x changed:0123", **lite), ""),
        (_row("efficientnet_lite0", n=1000, image_set=shared, weights="pypi:x global-hooks:01", **lite), ""),
        (_row("efficientnet_lite0", n=1000, image_set=shared, source="card", **lite), ""),
        (_row("efficientnet_lite0", n=1000, image_set="b2e410d4e9d70916", metric="top5", **lite), ""),
        (_row("deit_s", n=50000), "timm/val"),
        (_row("deit_s", n=5000), ""),  # a subset of val
        (_row("deit_s", n=50000, override={"img_size": 224}), ""),  # --img-size: not timm's protocol
        (_row("deit_s", n=50000, suite=clean_v0), ""),
        (_row("deit_s", n=50889, dataset="imagenet-sketch"), "timm/sketch"),
        (_row("deit_s", n=50889, dataset="imagenet-val"), ""),  # the folder was not Sketch
        (_row("convnext_b", n=10000, dataset="imagenet-v2", crop=0.875), ""),  # timm lists it at 288 only
        (
            _row(
                "convnext_b",
                n=10000,
                dataset="imagenet-v2",
                override={"img_size": 288, "crop_pct": 1.0},
                size=288,
                crop=1.0,
            ),
            "timm/imagenet_v2_test_size",
        ),  # fmt: skip
        (
            _row("convnext_b", n=10000, dataset="imagenet-v2", override={"img_size": 288}, size=288),
            "",
        ),  # 288 px but timm's crop_pct 0.875 instead of its test crop 1.0
        (
            _row(alexnet, **shot, subset="robustbench-imagenet-5000"),
            "robustbench-imagenet-corruptions/shot_noise/1",
        ),
        (_row(alexnet, **shot), ""),  # 5,000 images, but not RobustBench's list
    ]
    rows = pd.DataFrame([r for r, _ in cases])
    marks = list(comparable_with(rows))
    for (row, want), got in zip(cases, marks):
        assert got == want, (row["model"], row["dataset"], row["n_images"], got, want)


def test_weights_status_reads_caches_without_downloading(tmp_path):
    from robustbench_vit.models.names import resolve_spec
    from robustbench_vit.models.weights_status import weights_status
    from tests.helpers import write_cifar_card

    card = write_cifar_card(tmp_path / "card")
    assert weights_status(resolve_spec(str(card))) == ""
    (card.parent / "weights.safetensors").unlink()
    assert weights_status(resolve_spec(str(card))).startswith("card weights missing")
    assert weights_status(resolve_spec("resnet18"), pretrained=False) == ""
    assert "robustbench" in weights_status(resolve_spec("robustbench:Linf/Salman2020Do_R50"))


@needs_effnet
@pytest.mark.slow
def test_a_protocol_on_imagenet_v2_runs_on_its_release_layout(tmp_path):
    """A protocol naming dataset imagenet-v2 runs on folders 0..999 and its rows say imagenet-v2; built from
    the shared samples, the label mapping must give the shared-samples figure (76.9%) exactly."""
    from robustbench_vit.storage.reading import load_results
    from tests.test_data import _v2_layout

    card = tmp_path / "v2.toml"
    card.write_text("""
[card]
name = "v2-layout"
title = "the shared samples in ImageNet-V2's class-index layout"
citation = "shared/data/README.md (efficientnet-lite0: 76.9% on the 1,000 shared samples)"

[[protocol]]
id = "v2"
suite = "clean"
condition = "clean"
metric = "top1"
dataset = "imagenet-v2"
image_set = "the 1,000 shared samples in folders 0..999"
images = 1000
tolerance = 0.001
reason = "deterministic, same images; the reference is printed to 0.1 point"

[[cell]]
protocol = "v2"
model = "efficientnet_lite0"
value = 0.769
""")
    root = _v2_layout(tmp_path / "data", IMAGENET_SAMPLES)
    args = ["--progress", "off", "reproduce", str(card), "--data", str(root), "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.splitlines()[0])
    assert row["verdict"] == "within" and row["same_image_set"] and abs(row["rbvit"] - 0.769) < 1e-9
    assert row["source"].startswith("shared/data/README.md")  # the card's citation: no protocol source
    assert set(load_results(tmp_path / "o").dataset) == {"imagenet-v2"}
