"""The batched (GPU) data path: ``decode_batch`` and the cache filled through it give the pixels of the
per-image CPU path; formats the device decoder does not take fall back per image; ``--decode`` is a
run option. The CUDA agreement tests (nvjpeg vs the CPU, an auto-decoded run) run under ``-m gpu``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_vit.data import decode
from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.datasets import cifar10_batches, concat_datasets, flat_folder, image_folder
from robustbench_vit.data.decode import apply_geometry, decode_batch, read_bytes, read_rgb
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError, DataError
from tests.helpers import IMAGENET_SAMPLES, needs_imagenet

A, B = "n01440764", "n01443537"  # ImageNet wnids, so a run maps the folders onto the label space
DC = DataConfig((3, 64, 64), 0.875, "bicubic", (0.5,) * 3, (0.5,) * 3)


def _mixed_folder(root):
    """JPEGs of several sizes and subsamplings, a grayscale JPEG, a CMYK JPEG, a PNG and a progressive JPEG."""
    rng = np.random.default_rng(0)
    smooth = lambda h, w: np.asarray(  # noqa: E731 - natural-ish content: low-frequency noise, upsampled
        Image.fromarray(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)).resize(
            (w, h), Image.BICUBIC
        )
    )
    (root / A).mkdir(parents=True)
    (root / B).mkdir()
    Image.fromarray(smooth(96, 120)).save(root / A / "rgb420.jpg", quality=90)
    Image.fromarray(smooth(80, 72)).save(root / A / "rgb444.jpg", quality=95, subsampling=0)
    Image.fromarray(smooth(70, 90)).save(root / A / "progressive.jpg", quality=85, progressive=True)
    Image.fromarray(smooth(64, 64)[..., 0]).save(root / B / "gray.jpg", quality=90)
    Image.fromarray(smooth(88, 66)).convert("CMYK").save(root / B / "cmyk.jpg", quality=90)
    Image.fromarray(smooth(50, 60)).save(root / B / "lossless.png")
    return root


def _cpu_reference(ds, dc):
    return torch.stack([apply_geometry(read_rgb(ds.root / it), dc) for it in ds.items])


def test_decode_batch_on_cpu_equals_per_image_path(tmp_path):
    ds = image_folder(_mixed_folder(tmp_path))
    datas = [ds.encoded(i) for i in range(len(ds))]
    got = decode_batch(datas, ds.items, DC, "cpu")
    assert got.dtype == torch.uint8 and got.shape == (len(ds), 3, 64, 64) and got.device.type == "cpu"
    assert torch.equal(got, _cpu_reference(ds, DC))


def test_decode_batch_falls_back_per_image_when_a_call_fails(tmp_path, monkeypatch):
    """A rejected JPEG (the device decoder refusing CMYK, say) costs one CPU decode, not the batch."""
    ds = image_folder(_mixed_folder(tmp_path))
    real = decode.decode_jpeg
    calls = []

    def picky(data, mode, device):
        calls.append(isinstance(data, list))
        if isinstance(data, list) or bool((data.numel() % 2) == 0):  # lists and even-sized files fail
            raise RuntimeError("Error while decoding JPEG images")
        return real(data, mode=mode, device=device)

    monkeypatch.setattr(decode, "decode_jpeg", picky)
    got = decode_batch([ds.encoded(i) for i in range(len(ds))], ds.items, DC, "cpu")
    assert calls[0] is True and not all(calls)  # one batch call, then one call per JPEG
    assert torch.equal(got, _cpu_reference(ds, DC))


def test_device_decode_calls_are_bounded_in_bytes(tmp_path, monkeypatch):
    ds = image_folder(_mixed_folder(tmp_path))
    calls = []  # (images, encoded bytes) per decode_jpeg call
    real = decode.decode_jpeg

    def counting(data, mode, device):
        group = data if isinstance(data, list) else [data]
        calls.append((len(group), sum(d.numel() for d in group)))
        return real(data, mode=mode, device=device)

    monkeypatch.setattr(decode, "decode_jpeg", counting)
    monkeypatch.setattr(decode, "DEVICE_DECODE_BYTES", 3000)
    got = decode_batch([ds.encoded(i) for i in range(len(ds))], ds.items, DC, "cpu")
    n_jpeg = sum(decode._for_device_decoder(ds.encoded(i)) for i in range(len(ds)))
    assert sum(n for n, _ in calls) == n_jpeg and len(calls) > 1
    assert all(size <= 3000 or n == 1 for n, size in calls)  # an image larger than the bound goes alone
    assert torch.equal(got, _cpu_reference(ds, DC))


def test_cmyk_jpegs_stay_on_the_cpu_decoder(tmp_path, monkeypatch):
    """nvjpeg does not convert CMYK: such files never reach the device decoder (read from the frame header,
    past large APP segments), the others do."""
    ds = image_folder(_mixed_folder(tmp_path))
    comps = {Path(it).name: decode.jpeg_components(ds.encoded(i)) for i, it in enumerate(ds.items)}
    assert comps == {
        "rgb420.jpg": 3,
        "rgb444.jpg": 3,
        "progressive.jpg": 3,
        "gray.jpg": 1,
        "cmyk.jpg": 4,
        "lossless.png": None,
    }
    exif = tmp_path / "exif.jpg"
    Image.new("RGB", (8, 8)).save(exif, exif=b"Exif\x00\x00" + bytes(40000))
    assert decode.jpeg_components(read_bytes(exif)) == 3
    seen = []
    real = decode.decode_jpeg
    monkeypatch.setattr(decode, "decode_jpeg", lambda data, **kw: seen.extend(data) or real(data, **kw))
    got = decode_batch([ds.encoded(i) for i in range(len(ds))], ds.items, DC, "cpu")
    assert len(seen) == 4 and all(decode.jpeg_components(d) in (1, 3) for d in seen)
    assert torch.equal(got, _cpu_reference(ds, DC))


def test_a_jpeg_cut_short_never_reaches_the_device_decoder(tmp_path, monkeypatch):
    """A JPEG without its end-of-image marker (a copy interrupted) goes to the CPU decoders, which refuse
    it naming the file: a device decoder may fill the missing rows with gray and say nothing. A complete
    JPEG with bytes after its marker decodes on the CPU, as read_rgb does."""
    _mixed_folder(tmp_path)
    whole = read_bytes(tmp_path / A / "rgb420.jpg")
    assert decode.ends_complete(whole) and decode._for_device_decoder(whole)
    cut = whole[: int(whole.numel() * 0.8)].clone()
    padded = torch.cat([whole, torch.zeros(16, dtype=torch.uint8)])
    assert not decode._for_device_decoder(cut) and not decode._for_device_decoder(padded)
    seen = []
    real = decode.decode_jpeg
    monkeypatch.setattr(decode, "decode_jpeg", lambda data, **kw: seen.extend(data) or real(data, **kw))
    with pytest.raises(DataError, match="cut.jpg"):
        decode_batch([whole, cut], ["whole.jpg", "cut.jpg"], DC, "cpu")
    assert len(seen) == 1 and torch.equal(seen[0], whole)
    got = decode_batch([padded], ["padded.jpg"], DC, "cpu")
    assert torch.equal(got[0], apply_geometry(read_rgb(tmp_path / A / "rgb420.jpg"), DC))


def test_undecodable_file_names_itself(tmp_path):
    root = _mixed_folder(tmp_path)
    (root / A / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    ds = image_folder(root)
    with pytest.raises(DataError, match="broken.jpg"):
        decode_batch([ds.encoded(i) for i in range(len(ds))], [str(root / it) for it in ds.items], DC, "cpu")
    with pytest.raises(DataError, match="image not found"):
        read_bytes(root / A / "missing.jpg")


def test_cache_filled_in_device_batches_equals_thread_fill(tmp_path):
    ds = image_folder(_mixed_folder(tmp_path / "data"))
    threads = ImageCache(ds, DC, tmp_path / "c1")
    batched = ImageCache(ds, DC, tmp_path / "c2", decode_device="cpu")
    idx = np.arange(len(ds))
    assert threads.ensure(idx) == batched.ensure(idx) == len(ds)
    assert threads.decoder == batched.decoder == "cpu" and threads.dir.name == batched.dir.name
    assert torch.equal(threads.batch(idx), batched.batch(idx))


def test_only_file_datasets_decode_in_batches(tmp_path):
    """CIFAR batches are arrays, not files: a decode device is ignored; a CUDA decoder keys its own entry."""
    import pickle

    (tmp_path / "cifar").mkdir()
    with open(tmp_path / "cifar" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)
    cifar = cifar10_batches(tmp_path / "cifar")
    assert cifar.encoded is None
    assert ImageCache(cifar, DC, tmp_path / "c", decode_device="cpu").decode_device is None
    ds = image_folder(_mixed_folder(tmp_path / "data"))
    gpu = ImageCache(ds, DC, tmp_path / "c", decode_device="cuda")  # no decoding happens here
    assert gpu.decoder == "nvjpeg" and gpu.dir.name.endswith("-nvjpeg")
    assert ImageCache(ds, DC, tmp_path / "c").dir.name == gpu.dir.name.removesuffix("-nvjpeg")


def test_flat_and_concat_datasets_carry_encoded_bytes(tmp_path):
    root = _mixed_folder(tmp_path / "data")
    (tmp_path / "labels.txt").write_text(f"rgb420 {A}\nrgb444 {A}\n")
    flat_root = tmp_path / "flat"
    flat_root.mkdir()
    for name in ("rgb420.jpg", "rgb444.jpg"):
        (flat_root / name).write_bytes((root / A / name).read_bytes())
    flat = flat_folder(flat_root, tmp_path / "labels.txt")
    both = concat_datasets([("x", image_folder(root)), ("y", flat)], (A, B))
    assert both.encoded is not None
    for i in range(len(both)):
        assert torch.equal(decode.decode_rgb(both.encoded(i)), both.read(i))


def test_run_option_decode(tmp_path):
    from robustbench_vit.engine.runner import RunOptions, evaluate

    with pytest.raises(ConfigError, match="--decode must be one of"):
        RunOptions(decode="gpu").validate()
    root = _mixed_folder(tmp_path / "data")
    frames = [
        evaluate(
            "timm:test_resnet",
            "clean",
            RunOptions(data=str(root), pretrained=False, decode=d, cache_dir=str(tmp_path / d), batch_size=4),
        )
        for d in ("cpu", "device")
    ]
    cols = ["condition", "metric", "value", "n"]
    assert frames[0][cols].equals(frames[1][cols])
    assert '"decode": "device"' in frames[1]["config"].iloc[0]
    # the decoder that filled the cache: on a CPU, batched or not, it is the CPU's
    assert all(json.loads(c)["decoder"] == "cpu" for f in frames for c in f["config"])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _agreement(cpu: torch.Tensor, gpu: torch.Tensor, what: str) -> None:
    """Nearly every value within one uint8 level; prints the figures (gpu_check shows them)."""
    diff = (cpu.int() - gpu.int()).abs()
    within = (diff <= 1).float().mean().item()
    print(
        f"{what}: within 1 level {within:.5f}, mean |diff| {diff.float().mean():.4f}, max {int(diff.max())}"
    )
    assert within >= 0.99 and diff.float().mean() < 0.5


@pytest.mark.gpu
@needs_cuda
def test_nvjpeg_decode_agrees_with_cpu_on_written_files(tmp_path):
    """nvjpeg vs libjpeg-turbo on the mixed folder (4:2:0, 4:4:4, progressive, gray; CMYK and PNG go to the
    CPU), after the eval geometry. Needs no shared data, so it runs on a bare GPU machine."""
    synthetic = image_folder(_mixed_folder(tmp_path))
    got = decode_batch([synthetic.encoded(i) for i in range(len(synthetic))], synthetic.items, DC, "cuda")
    _agreement(_cpu_reference(synthetic, DC), got, "written files")


@pytest.mark.gpu
@needs_cuda
@needs_imagenet
def test_nvjpeg_decode_agrees_with_cpu_within_one_level():
    """nvjpeg vs libjpeg-turbo on the real samples, after two eval geometries."""
    ds = image_folder(IMAGENET_SAMPLES)
    idx = range(0, len(ds), 8)
    datas = [ds.encoded(i) for i in idx]
    names = [ds.items[i] for i in idx]
    for dc in (DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3), DC):
        _agreement(
            decode_batch(datas, names, dc, "cpu"), decode_batch(datas, names, dc, "cuda"), dc.describe()
        )


@pytest.mark.gpu
@needs_cuda
def test_auto_decodes_on_the_gpu_and_rows_say_so(tmp_path):
    """``--decode auto`` on CUDA fills an nvjpeg cache entry, rows name the decoder, and the numbers
    match a CPU-decoded run within an image."""
    from robustbench_vit.engine.runner import RunOptions, evaluate

    root = _mixed_folder(tmp_path / "data")
    runs = {
        d: evaluate(
            "timm:test_resnet",
            "clean",
            RunOptions(
                data=str(root),
                pretrained=False,
                decode=d,
                device="cuda",
                cache_dir=str(tmp_path / d),
                batch_size=4,
            ),
        )
        for d in ("cpu", "auto")
    }
    assert {json.loads(c)["decoder"] for c in runs["auto"].config} == {"nvjpeg"}
    assert {json.loads(c)["decoder"] for c in runs["cpu"].config} == {"cpu"}
    assert any(p.name.endswith("-nvjpeg") for p in (tmp_path / "auto").iterdir())
    a, b = (runs[d].set_index("metric").value for d in ("cpu", "auto"))
    n = float(runs["cpu"].n.iloc[0])
    assert (
        abs(a["top1"] - b["top1"]) <= 1 / n + 1e-9 and abs(a["nll"] - b["nll"]) < 0.01 * abs(a["nll"]) + 1e-3
    )
