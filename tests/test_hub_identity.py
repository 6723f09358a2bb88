"""Hub weights are identified by what the hub served, not by their name: a Hugging Face repo pushed again
under the same name (``hf-hub:me/my-vit``) is recomputed by eval and by a sweep, never resumed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from robustbench_vit.data import digests
from robustbench_vit.engine.runner import evaluate
from robustbench_vit.models.identity import hub_revision
from robustbench_vit.models.names import resolve_spec
from robustbench_vit.sweeps.run import load_sweep, run_sweep

WNIDS = ("n01440764", "n01443537", "n01484850")
REPO = "me/tiny-vit"


@pytest.fixture(autouse=True)
def _settled(monkeypatch):
    monkeypatch.setattr(digests, "SETTLED_NS", -(10**12))


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding one timm repo; ``push(seed)`` publishes new weights as a new
    commit that the repo's ``main`` ref then points at (what a download of the new version leaves)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = cache / f"models--{REPO.replace('/', '--')}"

    def push(seed: int) -> None:
        import timm
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(seed)
        net = timm.create_model("test_vit", pretrained=False)
        commit = f"{seed:040x}"
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        cfg = {"input_size": [3, 160, 160], "crop_pct": 0.875, "interpolation": "bicubic"}
        cfg.update(mean=[0.5] * 3, std=[0.5] * 3, num_classes=1000)
        (snap / "config.json").write_text(
            json.dumps({"architecture": "test_vit", "num_classes": 1000, "pretrained_cfg": cfg})
        )
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(snap / "model.safetensors"))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    return push


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    for w in WNIDS:
        (tmp_path / "data" / w).mkdir(parents=True)
        for k in range(2):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / w / f"{w}_{k}.png")
    return tmp_path / "data"


def _nll(out, cache, data) -> float:
    df = evaluate(
        f"hf-hub:{REPO}", "clean", data=str(data), out=str(out), cache_dir=str(cache), progress=False
    )
    return float(df.query("metric == 'nll'").value.iloc[0])


def test_a_repo_pushed_again_under_its_name_is_recomputed(tmp_path, hub, data):
    out, cache = tmp_path / "out", tmp_path / "cache"
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{tmp_path / "sweep-out"}"\ndata = "{data}"\nmodels = ["hf-hub:{REPO}"]\n'
        '[[suite]]\nname = "clean"\n'
    )
    spec = resolve_spec(f"hf-hub:{REPO}")
    assert hub_revision(spec) is None  # nothing cached yet
    hub(1)
    first = _nll(out, cache, data)
    assert hub_revision(spec).startswith(f"hf:{1:040x} files:")  # real files: their content too
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["skipped"]

    hub(2)  # the same name now serves other weights
    expected = _nll(tmp_path / "truth", tmp_path / "truth-cache", data)
    assert expected != first
    assert _nll(out, cache, data) == expected  # the same --out recomputes
    from robustbench_vit.results.leaderboard import build_leaderboard

    board = build_leaderboard(out).query("metric == 'nll'")
    assert sorted(board.value) == sorted([first, expected])  # two weights, two entries, each named
    assert board.label.str.contains(" tensors:").all() and board.label.nunique() == 2
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]  # the sweep reruns the cell


def test_loaded_hub_weights_are_identified_by_their_tensors(tmp_path, hub):
    """The run id takes the tensors that were loaded (after timm's checkpoint filter), whatever name the
    hub served them under."""
    from robustbench_vit.models.loading import load_model
    from robustbench_vit.models.modules import state_digest

    seen = []
    for seed in (1, 2):
        hub(seed)
        loaded = load_model(f"hf-hub:{REPO}", device="cpu", cache_dir=tmp_path / "c")
        tensors = state_digest(loaded.module.net)
        # the fixture's snapshot holds real files, which no checked hash names: their content is kept
        assert loaded.identity["weights"].startswith(f"timm:hf-hub:{REPO} tensors:{tensors} files:")
        assert loaded.weights == f"hf-hub:{REPO} tensors:{tensors[:16]}"  # the rows' weights column
        seen.append(loaded.identity["weights"])
    assert seen[0] != seen[1]


def test_an_edited_config_json_in_a_snapshot_of_real_files_is_another_model(tmp_path, hub, data):
    """A cache on a file system without symlinks holds real files that no blob name vouches for; timm builds
    ``hf-hub:`` models with its config.json's ``model_args``: the same tensors under ``act_layer = relu``
    are another network, which must not resume the GELU one's numbers (eval and sweep cell alike)."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{tmp_path / "sweep-out"}"\ndata = "{data}"\nmodels = ["hf-hub:{REPO}"]\n'
        '[[suite]]\nname = "clean"\n'
    )
    hub(1)
    first = _nll(out, cache, data)
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]
    config = next((tmp_path / "hf").rglob("config.json"))
    edited = json.loads(config.read_text())
    config.write_text(json.dumps({**edited, "model_args": {"act_layer": "relu"}}))

    expected = _nll(tmp_path / "truth", tmp_path / "truth-cache", data)
    assert expected != first
    assert _nll(out, cache, data) == expected
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]  # not "skipped"


def test_a_hub_repo_without_a_classifier_has_no_label_space(tmp_path, monkeypatch, data):
    """An ``hf-hub:`` repo whose config says ``num_classes: 0`` (a DINO or MAE backbone) is built without a
    head, as timm's own headless tags: its features are analysed, never scored as logits."""
    import timm
    import torch
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from robustbench_vit.errors import ConfigError
    from robustbench_vit.models.loading import load_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "hf" / "models--me--backbone"
    snap = repo / "snapshots" / ("3" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("3" * 40)
    torch.manual_seed(0)
    net = timm.create_model("test_vit", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(snap / "model.safetensors"))
    cfg = {
        "input_size": [3, 160, 160],
        "crop_pct": 0.875,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "num_classes": 0,
    }
    (snap / "config.json").write_text(
        json.dumps({"architecture": "test_vit", "num_classes": 0, "pretrained_cfg": cfg})
    )
    assert load_model("hf-hub:me/backbone", device="cpu", cache_dir=tmp_path / "c").label_space.name == "none"
    kw = dict(data=str(data), out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"), progress=False)
    df = evaluate("hf-hub:me/backbone", "representations", batch_size=6, **kw)
    assert {"cka", "attention_distance"} <= set(df.metric)
    with pytest.raises(ConfigError, match="has no classifier"):
        evaluate("hf-hub:me/backbone", "clean", **kw)
