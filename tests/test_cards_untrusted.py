"""A model card is untrusted data: it can name a timm/torchvision architecture, never code to run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robustbench_vit.errors import CheckpointError
from robustbench_vit.models.cards import read_card

BASE = {
    "num_classes": 10,
    "input_size": [3, 32, 32],
    "mean": [0.5] * 3,
    "std": [0.5] * 3,
    "label_space": "cifar10",
    "weights": "w.safetensors",
}


@pytest.mark.parametrize(
    "card",
    [
        {"source": "entrypoint", "arch": "os:system", "kwargs": {"command": "touch {marker}"}},
        {"source": "entrypoint", "arch": "subprocess:run", "kwargs": {"args": ["touch", "{marker}"]}},
        {"source": "timm", "arch": "os:system", "kwargs": {"command": "touch {marker}"}},
        {"source": "torchvision", "arch": "os.system"},
        {"source": "python", "arch": "x"},
    ],
)
def test_card_never_runs_code(tmp_path, card):
    marker = tmp_path / "MARKER"
    raw = json.loads(json.dumps({**BASE, **card}).replace("{marker}", str(marker)))
    path = tmp_path / "card.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="card"):
        read_card(path)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustbench_vit.cli.commands",
            "eval",
            "-m",
            str(path),
            "-s",
            "clean",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not marker.exists()
    assert r.returncode == 5, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr and "card" in lines[0]


def test_card_kwargs_must_be_json_values(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**BASE, "arch": "resnet10t", "kwargs": {"act_layer": {"__class__": "x"}}}))
    with pytest.raises(CheckpointError, match="kwargs"):
        read_card(path)


@pytest.mark.parametrize(
    "source, arch, kwargs",
    [
        (
            "timm",
            "resnet10t",
            {"checkpoint_path": "other.pth"},
        ),  # an unhashed file (a --random-weights run's)
        ("timm", "resnet10t", {"pretrained_cfg": "a1_in1k"}),
        ("timm", "resnet10t", {"pretrained": True}),
        ("timm", "resnet10t", {"cache_dir": "/tmp"}),
        ("torchvision", "resnet18", {"weights": "DEFAULT"}),
        ("timm", "resnet10t", {"num_classes": 1000}),
    ],
)
def test_card_kwargs_never_load_weights_from_elsewhere(tmp_path, source, arch, kwargs):
    """A card's weights are its ``weights`` field, hashed into the model's identity: a builder keyword that
    loads weights or a config from a file or the hub is refused, naming it."""
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**BASE, "source": source, "arch": arch, "kwargs": kwargs}))
    with pytest.raises(CheckpointError, match=next(iter(kwargs))):
        read_card(path)


def test_plain_cards_still_load(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**BASE, "arch": "resnet10t", "kwargs": {"drop_rate": 0.0}}))
    assert read_card(path).arch == "resnet10t"
    path.write_text(json.dumps({**BASE, "source": "torchvision", "arch": "resnet18"}))
    assert read_card(path).source == "torchvision"


def test_overwritten_weights_never_return_a_stale_result(tmp_path):
    """The run id hashes the weights' content: weights overwritten in place under the same file name
    give a new run (and rows naming the new hash), equal to a fresh run, never the old rows."""
    import robustbench_vit as rbvit
    from tests.helpers import CIFAR10_TEST, write_cifar_card

    if not CIFAR10_TEST.is_dir():
        pytest.skip("shared CIFAR-10 absent")
    card = write_cifar_card(tmp_path / "m", arch="resnet10t", seed=0)
    kw = dict(data=str(CIFAR10_TEST), limit=40)
    first = rbvit.evaluate(str(card), "clean", out=str(tmp_path / "out"), **kw)
    write_cifar_card(tmp_path / "m", arch="resnet10t", seed=1)  # same names, new weights
    again = rbvit.evaluate(str(card), "clean", out=str(tmp_path / "out"), **kw)
    fresh = rbvit.evaluate(str(card), "clean", out=str(tmp_path / "fresh"), **kw)
    assert first["run_id"].iat[0] != again["run_id"].iat[0]
    assert first["weights"].iat[0] != again["weights"].iat[0] and "sha256:" in again["weights"].iat[0]
    assert again.set_index("metric")["value"].to_dict() == fresh.set_index("metric")["value"].to_dict()
    assert first.set_index("metric")["value"]["nll"] != again.set_index("metric")["value"]["nll"]
