import json
import pickle

import pytest
import torch

from robustbench_vit.errors import CheckpointError, RbvitError, UnknownNameError, WeightsUnavailableError
from robustbench_vit.models.checkpoint import read_state_dict
from robustbench_vit.models.loading import load_model, resolve_spec


def test_pixel_model_normalizes_inside():
    m = load_model("timm:test_vit", pretrained=False, device="cpu")
    x = torch.rand(2, 3, *m.data_config.image_size)
    mean = torch.tensor(m.data_config.mean).view(1, 3, 1, 1)
    std = torch.tensor(m.data_config.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(m(x), m.net((x - mean) / std), atol=1e-5)
    assert not m.module.training and not any(p.requires_grad for p in m.module.parameters())


def test_bf16_autocast_returns_fp32_logits():
    m = load_model("timm:test_resnet", pretrained=False, device="cpu", dtype="bf16")
    with torch.no_grad():
        out = m(torch.rand(2, 3, *m.data_config.image_size))
    assert out.dtype == torch.float32


def test_card_loads_with_its_own_preprocessing(cifar_card):
    m = load_model(str(cifar_card), device="cpu")
    assert m.data_config.image_size == (32, 32) and m.data_config.crop_pct == 1.0
    assert m.data_config.mean == (0.4914, 0.4822, 0.4465) and m.label_space.name == "cifar10"
    assert m.weights.startswith("card:weights.safetensors sha256:")  # named by content
    assert m(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_card_key_mismatch_lists_missing_and_unexpected(cifar_card, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(cifar_card.parent / "weights.safetensors"))
    sd["extra.weight"] = torch.zeros(1)
    del sd["head.bias"]
    save_file(sd, str(tmp_path / "weights.safetensors"))
    card = json.loads(cifar_card.read_text())
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"missing keys: head.bias.*unexpected keys: extra.weight"):
        load_model(str(tmp_path / "card.json"), device="cpu")


def test_card_missing_field(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"arch": "resnet18"}))
    with pytest.raises(CheckpointError, match="missing: num_classes"):
        load_model(str(tmp_path / "c.json"))


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(p)


def test_plain_and_wrapped_state_dicts(tmp_path):
    sd = {"module.a": torch.zeros(2)}
    torch.save({"state_dict": sd}, tmp_path / "w.pth")
    assert list(read_state_dict(tmp_path / "w.pth")) == ["a"]


def test_unknown_model_suggests():
    with pytest.raises(RbvitError, match="Did you mean 'vit_b16'"):
        resolve_spec("vit_b61")
    with pytest.raises(UnknownNameError):
        from robustbench_vit.models.zoo import MODELS

        MODELS.get("nope")


def test_offline_download_failure_is_actionable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="--checkpoint"):
        load_model("deit_t", device="cpu")


def test_timm_checkpoint_option(tmp_path):
    import timm
    from safetensors.torch import save_file

    net = timm.create_model("test_resnet", pretrained=False)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    m = load_model("timm:test_resnet", checkpoint=str(tmp_path / "w.safetensors"), device="cpu")
    assert m.weights.startswith("checkpoint:")
    with torch.no_grad():
        x = torch.rand(1, 3, *m.data_config.image_size)
        assert torch.allclose(m.net(x), net.eval()(x))


def factory():
    """Entry-point factory used by the test below (module:factory)."""
    import timm

    net = timm.create_model("test_vit", pretrained=False)
    return net, {
        "input_size": [3, 160, 160],
        "crop_pct": 0.95,
        "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }


def test_entrypoint_factory():
    m = load_model("tests.test_models:factory", device="cpu")
    assert m.spec.source == "entrypoint" and m.data_config.image_size == (160, 160)


def test_torchvision_source_reads_weights_transforms():
    from robustbench_vit.models.zoo import MODELS

    m = load_model(MODELS.get("tv_resnet50_v2"), pretrained=False, device="cpu")
    assert m.data_config.resize_size == (232, 232) and m.data_config.image_size == (224, 224)


def test_cls_attention_matches_timm_attention_weights():
    from robustbench_vit.models.attention import cls_attention

    m = load_model("timm:vit_tiny_patch16_224", pretrained=False, device="cpu")
    attn = m.net.blocks[-1].attn
    attn.fused_attn = False
    seen = []
    h = attn.attn_drop.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.rand(2, 3, 224, 224)
    ours = cls_attention(m, x, head="mean")
    h.remove()
    ref = seen[-1][:, :, 0, 1:].mean(1).reshape(2, 14, 14)
    assert torch.allclose(ours, ref, atol=1e-5)
    with pytest.raises(Exception, match="class token"):
        cls_attention(load_model("timm:test_resnet", pretrained=False, device="cpu"), x)


@pytest.mark.parametrize(
    "ref,source,arch,name",
    [
        ("resnet50", "timm", "resnet50.tv_in1k", "resnet50"),  # zoo names win
        ("vit_tiny_patch16_224", "timm", "vit_tiny_patch16_224", "vit_tiny_patch16_224"),
        ("resnet18.a1_in1k", "timm", "resnet18.a1_in1k", "resnet18.a1_in1k"),
        ("timm:vit_tiny_patch16_224", "timm", "vit_tiny_patch16_224", "vit_tiny_patch16_224"),
        ("hf-hub:timm/resnet18.a1_in1k", "timm", "hf-hub:timm/resnet18.a1_in1k", "resnet18.a1_in1k"),
        ("torchvision:resnet50", "torchvision", "resnet50", "resnet50.tv_imagenet1k_v2"),
        ("torchvision:resnet50:IMAGENET1K_V1", "torchvision", "resnet50", "resnet50.tv_imagenet1k_v1"),
    ],
)
def test_names_users_already_type_resolve_offline(ref, source, arch, name):
    from robustbench_vit.models.loading import resolve_spec

    spec = resolve_spec(ref)
    assert (spec.source, spec.arch, spec.name) == (source, arch, name)


def test_bare_timm_name_equals_prefixed_one_and_bad_names_say_what_exists():
    from robustbench_vit.errors import UnknownNameError
    from robustbench_vit.models.loading import resolve_spec

    assert resolve_spec("vit_tiny_patch16_224") == resolve_spec("timm:vit_tiny_patch16_224")
    with pytest.raises(UnknownNameError, match="did you mean torchvision:resnet50"):
        resolve_spec("torchvision:resnet5O")
    with pytest.raises(UnknownNameError, match="IMAGENET1K_V2"):
        resolve_spec("torchvision:resnet50:IMAGENET9K")
    with pytest.raises(UnknownNameError):
        resolve_spec("vit_tinyy")


def test_torchvision_source_builds_offline_with_its_enum_preprocessing():
    m = load_model("torchvision:resnet18", pretrained=False, device="cpu")
    assert m.spec.weights == "ResNet18_Weights.IMAGENET1K_V1" and m.data_config.resize_size == (256, 256)
    assert m.data_config.source.startswith("torchvision:") and m(torch.rand(1, 3, 224, 224)).shape == (
        1,
        1000,
    )


def test_hf_hub_offline_is_a_clear_weights_error(monkeypatch):
    from robustbench_vit.errors import WeightsUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="resnet18.a1_in1k"):
        load_model("hf-hub:timm/resnet18.a1_in1k", device="cpu")


def test_random_weights_are_named_so():
    """A model built without its pretrained weights says so in its name (rows, plots, legends); a checkpoint
    or an nn.Module keeps its own name, and lookups by the plain name still find it."""
    from robustbench_vit.models.names import stored_key

    m = load_model("timm:test_vit", pretrained=False, device="cpu")
    assert m.spec.name == "test_vit.random" and m.weights == "random"
    assert load_model("resnet18", pretrained=False, device="cpu").spec.name == "resnet18.random"
    assert stored_key("timm:test_vit", ["test_vit.random", "x"]) == "test_vit.random"
    assert stored_key("resnet18", ["resnet18", "resnet18.random"]) == "resnet18"
    assert (
        stored_key("timm:test_vit.random", ["test_vit.random", "x"]) == "test_vit.random"
    )  # the stored name


def test_timm_tags_and_typos_are_unknown_names_with_suggestions():
    """A pretrained tag timm does not have is exit 3 (unknown name) with timm's tags, not a failed download;
    a typo in a bare timm name gets timm's closest names."""
    with pytest.raises(
        UnknownNameError, match=r"no pretrained tag 'augreg_in21k_ft_in1kk'.*augreg_in21k_ft_in1k"
    ):
        resolve_spec("vit_base_patch16_224.augreg_in21k_ft_in1kk")
    with pytest.raises(UnknownNameError, match=r"resnet18 has no pretrained tag 'nope'.*resnet18\."):
        resolve_spec("timm:resnet18.nope")
    with pytest.raises(UnknownNameError, match=r"timm has timm:convnext_tiny"):
        resolve_spec("convnext_tiyn")
    assert resolve_spec("resnet18.a1_in1k").arch == "resnet18.a1_in1k"
