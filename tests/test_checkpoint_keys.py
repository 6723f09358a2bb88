"""Which weights a checkpoint holding several sets evaluates (``state_dict`` / ``state_dict_ema``), and
model-card fields (and preprocessing keys given from Python) that would otherwise leave a default in place
without a word."""

import json
import logging

import pytest
import torch
from helpers import write_cifar_card

from robustbench_vit.errors import CheckpointError
from robustbench_vit.models.checkpoint import read_state_dict, split_checkpoint
from robustbench_vit.models.loading import load_model


@pytest.fixture
def two_sets(tmp_path):
    """A timm-style training checkpoint: plain weights and an EMA copy (other values), plus an optimizer."""
    from safetensors.torch import load_file

    card = write_cifar_card(tmp_path / "card", seed=0)
    plain = load_file(str(card.parent / "weights.safetensors"))
    ema = load_file(str(write_cifar_card(tmp_path / "other", seed=1).parent / "weights.safetensors"))
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1}]}
    path = tmp_path / "train.pth"
    torch.save({"state_dict": plain, "state_dict_ema": ema, "optimizer": optimizer, "epoch": 3}, path)
    return {"card": card, "path": path, "plain": plain, "ema": ema}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_plain_weights_load_by_default_and_the_other_set_is_named(two_sets, caplog):
    with caplog.at_level(logging.WARNING, logger="robustbench_vit.models.checkpoint"):
        sd = read_state_dict(two_sets["path"])
    assert _same(sd, two_sets["plain"])
    assert "'state_dict_ema'" in caplog.text and "#KEY" in caplog.text
    assert "optimizer" not in caplog.text  # an optimizer's state is not a set of weights


def test_file_hash_key_loads_the_named_set(two_sets):
    assert _same(read_state_dict(f"{two_sets['path']}#state_dict_ema"), two_sets["ema"])
    assert _same(read_state_dict(two_sets["path"], "state_dict_ema"), two_sets["ema"])
    with pytest.raises(
        CheckpointError, match=r"no weights under 'ema' \(it holds: state_dict, state_dict_ema\)"
    ):
        read_state_dict(f"{two_sets['path']}#ema")
    weights = two_sets["card"].parent / "weights.safetensors"
    with pytest.raises(CheckpointError, match="safetensors.*no key 'state_dict'"):
        read_state_dict(f"{weights}#state_dict")


def test_a_single_set_loads_without_a_warning(tmp_path, caplog):
    torch.save(
        {"model": {"a": torch.zeros(2)}, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "w.pth"
    )
    with caplog.at_level(logging.WARNING):
        assert list(read_state_dict(tmp_path / "w.pth")) == ["a"]
    assert not caplog.records


def test_a_file_with_a_hash_in_its_name_is_that_file(tmp_path):
    path = tmp_path / "run#3.pth"
    torch.save({"a": torch.ones(1)}, path)
    assert split_checkpoint(path) == (path, None)
    assert split_checkpoint(f"{tmp_path}/x.pth#model_ema") == (tmp_path / "x.pth", "model_ema")
    assert list(read_state_dict(path)) == ["a"]


def test_the_chosen_set_is_part_of_the_model_identity(two_sets):
    """--checkpoint FILE and FILE#state_dict_ema are two models (other outputs, other run ids); a card's
    checkpoint_key is the same choice."""
    card, path = two_sets["card"], two_sets["path"]
    x = torch.rand(2, 3, 32, 32)
    plain = load_model(str(card), device="cpu", checkpoint=str(path))
    ema = load_model(str(card), device="cpu", checkpoint=f"{path}#state_dict_ema")
    assert plain.identity["weights"] != ema.identity["weights"]
    assert ema.identity["weights"].endswith("#state_dict_ema") and "#state_dict_ema" in ema.weights
    assert not torch.equal(plain(x), ema(x))

    raw = json.loads(card.read_text())
    raw.update(weights="../train.pth", checkpoint_key="state_dict_ema")
    keyed = card.parent / "ema.json"
    keyed.write_text(json.dumps(raw))
    by_card = load_model(str(keyed), device="cpu")
    assert torch.equal(by_card(x), ema(x))
    assert by_card.weights.startswith("card:train.pth#state_dict_ema")
    raw.pop("checkpoint_key")
    keyed.write_text(json.dumps(raw))
    unkeyed = load_model(str(keyed), device="cpu")
    assert torch.equal(unkeyed(x), plain(x)) and unkeyed.identity != by_card.identity


@pytest.mark.parametrize(
    ("edit", "drop", "message"),
    [
        ({"crop_ptc": 1.0}, "crop_pct", "unknown field 'crop_ptc'; did you mean 'crop_pct'"),
        (
            {"interpolaton": "bicubic"},
            "interpolation",
            "unknown field 'interpolaton'; did you mean 'interpolation'",
        ),
        ({"kwarg": {}}, "kwargs", "unknown field 'kwarg'; did you mean 'kwargs'"),
        ({"crop_pct": None}, None, "crop_pct must be a number, got None"),
        ({"crop_pct": "1.0"}, None, "crop_pct must be a number"),
        ({"crop_pct": 0}, None, r"crop_pct must be in \(0, 3\]"),
        ({"interpolation": ""}, None, "interpolation must be a non-empty string"),
        ({"checkpoint_key": 3}, None, "checkpoint_key must be a non-empty string"),
    ],
)
def test_a_card_field_that_would_leave_a_default_in_place_is_refused(tmp_path, edit, drop, message):
    """A misspelt optional field evaluated with timm's default crop (0.875 instead of the card's 1.0) and
    exited 0; so did a null or zero crop_pct."""
    card = write_cifar_card(tmp_path / "card")
    raw = json.loads(card.read_text())
    raw.pop(drop, None)
    raw.update(edit)
    card.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=message):
        load_model(str(card), device="cpu")


def test_documentation_fields_are_accepted(tmp_path):
    card = write_cifar_card(tmp_path / "card", description="tiny ViT", paper="none", license="MIT")
    assert load_model(str(card), device="cpu").data_config.crop_pct == 1.0


def test_a_misspelt_preprocessing_key_from_python_is_refused():
    """The notebook path (a module with preprocessing=...) and an entry point's (module, config) read the
    same keys as a card: a misspelt one is refused, a DataConfig's own dict is accepted back."""
    import timm

    from robustbench_vit.errors import ConfigError
    from robustbench_vit.models.modules import wrap_module

    net = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    pre = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "label_space": "cifar10"}
    with pytest.raises(ConfigError, match="unknown preprocessing key 'crop_ptc'; did you mean 'crop_pct'"):
        wrap_module(net, preprocessing={**pre, "crop_ptc": 1.0}, device="cpu")
    with pytest.raises(ConfigError, match="interpolation '' not in"):
        wrap_module(net, preprocessing={**pre, "interpolation": ""}, device="cpu")
    loaded = wrap_module(net, preprocessing={**pre, "crop_pct": 1.0}, device="cpu")
    again = wrap_module(
        net, preprocessing={**loaded.data_config.to_dict(), "label_space": "cifar10"}, device="cpu"
    )
    assert again.data_config == loaded.data_config
    whole = wrap_module(net, preprocessing=dict(net.pretrained_cfg), device="cpu")  # timm's own cfg, whole
    assert whole.data_config.image_size == tuple(net.pretrained_cfg["input_size"][1:])
    with pytest.raises(ConfigError, match="model factory 'tests.test_checkpoint_keys:misspelt_factory'"):
        load_model("tests.test_checkpoint_keys:misspelt_factory", device="cpu")


def misspelt_factory():
    """An entry point whose config misspells crop_pct (used by the test above)."""
    import timm

    net = timm.create_model("test_vit", pretrained=False)
    return net, {"input_size": [3, 160, 160], "crop_ptc": 0.95, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.mark.parametrize("what", ["weights file", "model card"])
def test_a_file_overwritten_while_the_model_loads_is_refused(tmp_path, monkeypatch, what):
    """The weights' identity is taken before and after the load: a checkpoint (or card) overwritten while it
    was read would otherwise give rows that name one file's digest and hold another's numbers."""
    from robustbench_vit.models import loading

    card = write_cifar_card(tmp_path / "card", seed=0)
    other = write_cifar_card(tmp_path / "other", seed=1)
    real = loading.read_state_dict

    def read_then_overwrite(*args, **kwargs):
        sd = real(*args, **kwargs)
        if what == "weights file":
            (card.parent / "weights.safetensors").write_bytes(
                (other.parent / "weights.safetensors").read_bytes()
            )
        else:
            card.write_text(json.dumps({**json.loads(card.read_text()), "crop_pct": 0.9}))
        return sd

    monkeypatch.setattr(loading, "read_state_dict", read_then_overwrite)
    with pytest.raises(CheckpointError, match=f"{what} of cifar_vit changed while it was loaded"):
        load_model(str(card), device="cpu", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(loading, "read_state_dict", real)
    assert load_model(str(card), device="cpu", cache_dir=tmp_path / "cache").identity  # settled: loads
