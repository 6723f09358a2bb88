"""A model card is untrusted data: it can name a timm/torchvision architecture, never code to run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robustbench_vit.errors import CheckpointError
from robustbench_vit.models.cards import read_card

BASE = {"num_classes": 10, "input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3,
        "label_space": "cifar10", "weights": "w.safetensors"}  # fmt: skip


@pytest.mark.parametrize("card", [
    {"source": "entrypoint", "arch": "os:system", "kwargs": {"command": "touch {marker}"}},
    {"source": "entrypoint", "arch": "subprocess:run", "kwargs": {"args": ["touch", "{marker}"]}},
    {"source": "timm", "arch": "os:system", "kwargs": {"command": "touch {marker}"}},
    {"source": "torchvision", "arch": "os.system"},
    {"source": "python", "arch": "x"},
])  # fmt: skip
def test_card_never_runs_code(tmp_path, card):
    marker = tmp_path / "MARKER"
    raw = json.loads(json.dumps({**BASE, **card}).replace("{marker}", str(marker)))
    path = tmp_path / "card.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="card"):
        read_card(path)
    r = subprocess.run([sys.executable, "-m", "robustbench_vit.cli", "eval", "-m", str(path), "-s", "clean",
                        "--data", str(tmp_path), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert not marker.exists()
    assert r.returncode == 5, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr and "card" in lines[0]


def test_card_kwargs_must_be_json_values(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**BASE, "arch": "resnet10t", "kwargs": {"act_layer": {"__class__": "x"}}}))
    with pytest.raises(CheckpointError, match="kwargs"):
        read_card(path)


def test_plain_cards_still_load(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**BASE, "arch": "resnet10t", "kwargs": {"drop_rate": 0.0}}))
    assert read_card(path).arch == "resnet10t"
    path.write_text(json.dumps({**BASE, "source": "torchvision", "arch": "resnet18"}))
    assert read_card(path).source == "torchvision"
