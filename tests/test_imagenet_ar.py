"""The imagenet_a / imagenet_r suites: 200-class masks, fixtures in their real layout, real weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_vit.data.labels import get_label_space
from robustbench_vit.data.registry import subset_synsets
from tests.helpers import IMAGENET_SAMPLES, REFERENCE, needs_effnet, needs_imagenet

CSV = REFERENCE / "robustbench_imagenet_c_unaggregated.csv"
RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]


@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_timm_subset_indices_match_the_wnid_list(name):
    wnids, idx = subset_synsets(name)
    space = get_label_space("imagenet1k")
    assert len(wnids) == len(idx) == 200 and idx == sorted(idx)
    assert [space.wnids[i] for i in idx] == wnids


def _ar_fixture(root: Path, name: str) -> Path:
    wnids, _ = subset_synsets(name)
    for w in wnids:
        (root / w).mkdir(parents=True)
        src = next((IMAGENET_SAMPLES / w).iterdir())
        (root / w / src.name).symlink_to(src)
    return root


@needs_imagenet
@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_an_incomplete_copy_is_never_scored_1000_way_as_if_it_were_the_benchmark(tmp_path, name, caplog):
    """A partial download named like the benchmark is refused (its 1000-way numbers would pass for the
    200-way protocol's); unnamed, 100+ classes of one set are scored as asked with a warning naming the flag."""
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.errors import DataError

    root = _ar_fixture(tmp_path / name.replace("-", "_"), name)
    assert open_dataset(root)[0] == name  # complete: recognised
    for w in subset_synsets(name)[0][120:]:
        for f in (root / w).iterdir():
            f.unlink()
        (root / w).rmdir()
    with pytest.raises(DataError, match=f"named like {name} but holds 120 of its 200 classes"):
        open_dataset(root)
    assert open_dataset(root, dataset=name)[0] == name
    plain = root.rename(tmp_path / "mine")
    assert open_dataset(plain)[0] == "imagenet-val"
    assert f"pass --dataset {name}" in caplog.text


@needs_imagenet
@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_ar_fixture_masked_and_unmasked_refused(tmp_path, name):
    root = _ar_fixture(tmp_path / name, name)
    suite = name.replace("-", "_")
    r = subprocess.run(
        [*RBVIT, "eval", "-m", "timm:test_resnet", "--random-weights", "-s", "clean", "--data", str(root)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and f"--suite {suite}" in r.stderr
    r = subprocess.run(
        [
            *RBVIT,
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            suite,
            "--data",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    metrics = {"top1", "top5", "nll", "ece", "brier", "rms_calibration_error", "aurra"}
    assert {x["metric"] for x in rows} == metrics and all(x["n"] == 200 for x in rows)


@needs_imagenet
def test_a_flat_folder_with_labels_scores_as_its_class_folder_layout(tmp_path):
    """ImageNet-R's images in one flat folder with a labels file: the imagenet_r suite (and a --limit draw)
    gives the numbers of the same images in wnid folders; a clean run of the flat folder is refused (it
    is recognised as ImageNet-R from its labels, where it used to be scored 1000-way as imagenet-val)."""
    import robustbench_vit as rbvit
    from robustbench_vit.errors import ConfigError

    folders = _ar_fixture(tmp_path / "folders", "imagenet-r")
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for link in sorted(folders.rglob("*.JPEG")):
        (flat / link.name).symlink_to(link.resolve())
        lines.append(f"{link.name} {link.parent.name}\n")
    (tmp_path / "labels.txt").write_text("".join(lines))
    kw = dict(limit=40, cache_dir=str(tmp_path / "c"), progress=False)
    model = rbvit.load_model("timm:test_resnet", pretrained=False, device="cpu")

    def scores(**data):  # type: ignore[no-untyped-def]
        df = rbvit.evaluate(model, "imagenet_r", **data, **kw)
        return df.set_index(["condition", "metric"]).value.fillna(-1).sort_index()

    by_folder = scores(data=str(folders))
    by_labels = scores(data=str(flat), labels=str(tmp_path / "labels.txt"))
    assert list(by_folder.index) == list(by_labels.index)
    assert by_folder.to_numpy() == pytest.approx(by_labels.to_numpy(), abs=1e-6)
    with pytest.raises(ConfigError, match="--suite imagenet_r"):
        rbvit.evaluate(model, "clean", data=str(flat), labels=str(tmp_path / "labels.txt"), **kw)


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_imagenet_a_layout_with_real_weights_and_clean_diff(tmp_path):
    import robustbench_vit as rbvit

    root = _ar_fixture(tmp_path / "a", "imagenet-a")
    df = rbvit.evaluate(
        "efficientnet_lite0",
        "imagenet_a",
        data=str(root),
        out=str(tmp_path / "o"),
        suite_params={"clean_data": str(IMAGENET_SAMPLES)},
    )
    top1 = df[df.metric == "top1"].set_index("condition")["value"]
    # the fixture holds the very clean images of the 200 classes: same accuracy, diff 0
    assert top1["imagenet-a"] == pytest.approx(top1["clean-200"])
    assert df.set_index("metric").loc["top1_diff", "value"] == pytest.approx(0.0)
    assert top1["imagenet-a"] > 0.7


@needs_imagenet
@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_reference_preprocessing_is_the_papers_transform(tmp_path, name):
    """preprocessing=reference equals the papers' eval.py restated: PIL Resize(256), CenterCrop(224),
    ToTensor, Normalize(ImageNet) for a model whose own preprocessing is something else entirely."""
    import numpy as np
    import timm
    import torch
    import torchvision.transforms as T
    from PIL import Image

    import robustbench_vit as rbvit

    root = _ar_fixture(tmp_path / name, name)
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=1000).eval()
    own = {
        "input_size": [3, 160, 160],
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": [0.5] * 3,
        "std": [0.3] * 3,
    }
    suite = name.replace("-", "_")
    df = rbvit.evaluate(
        net,
        suite,
        data=str(root),
        preprocessing=own,
        name="tiny",
        progress=False,
        limit=40,
        suite_params={"preprocessing": "reference"},
        save_samples=True,
        out=str(tmp_path / "out"),
    )
    from robustbench_vit.storage.reading import load_samples

    samples = load_samples(tmp_path / "out").sort_values("index")
    wnids, idx = subset_synsets(name)
    tf = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    x = torch.stack([tf(Image.open(root / item).convert("RGB")) for item in samples["item"]])
    with torch.no_grad():
        logits = net(x)[:, idx]
    y = torch.as_tensor([wnids.index(it.split("/")[0]) for it in samples["item"]])
    ref_loss = torch.nn.functional.cross_entropy(logits, y, reduction="none").numpy()
    # the same pixels (rbvit's CPU geometry is PIL's), so the same losses but for float rounding
    assert np.abs(samples["loss"].to_numpy() - ref_loss).max() < 1e-4
    assert (samples["pred"].to_numpy() == logits.argmax(1).numpy()).all()
    assert set(df.params.map(lambda p: json.loads(p)["preprocessing"])) == {"reference"}
    assert "reference" in df.preprocessing_source.iloc[0] and set(df.input_size) == {224}


@needs_imagenet
@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_a_copy_with_a_stray_class_folder_is_never_scored_1000_way(tmp_path, name):
    """All 200 classes plus one class folder copied in (a wnid outside the set): its class set is neither the
    benchmark's nor a part of it, and it used to be scored 1000-way as ImageNet val under the benchmark's
    name. Named like the benchmark, it is refused, naming the stray folder."""
    from robustbench_vit.data.labels import get_label_space
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.errors import DataError

    root = _ar_fixture(tmp_path / name, name)
    stray = next(w for w in get_label_space("imagenet1k").wnids if w not in set(subset_synsets(name)[0]))
    (root / stray).mkdir()
    (root / stray / "x.JPEG").symlink_to(next((IMAGENET_SAMPLES / stray).iterdir()))
    with pytest.raises(
        DataError, match=f"named like {name} but holds 1 class folders outside its 200 \\(e.g. {stray}"
    ):
        open_dataset(root)
    assert open_dataset(root, dataset="imagenet-val")[0] == "imagenet-val"  # 1000-way, when asked for
