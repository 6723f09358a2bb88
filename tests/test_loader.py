"""The read-ahead loader: the same batches, in order, as reading the cache directly, whatever the
batch size and read-ahead depth; stopping early stops its readers; on CUDA (``-m gpu``) the batches
equal the CPU ones exactly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.datasets import image_folder
from robustbench_vit.data.loader import device_batches
from robustbench_vit.data.preprocessing import DataConfig

DC = DataConfig((3, 24, 24), 1.0, "bilinear", (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    for c in ("n01440764", "n01443537"):
        (root / "data" / c).mkdir(parents=True)
        for i in range(13):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
                root / "data" / c / f"{i}.png"
            )
    ds = image_folder(root / "data")
    c = ImageCache(ds, DC, root / "cache")
    c.ensure(np.arange(len(ds)))
    return c


@pytest.mark.parametrize(("batch_size", "read_ahead"), [(1, 1), (4, 3), (7, 2), (26, 3), (64, 1)])
def test_batches_equal_direct_reads_in_order(cache, batch_size, read_ahead):
    indices = np.array([0, 2, 3, 5, 8, 9, 10, 13, 14, 17, 20, 21, 25])
    labels = np.arange(len(cache.dataset)) * 10
    got = list(device_batches(cache, indices, labels, torch.device("cpu"), batch_size, read_ahead=read_ahead))
    assert [len(ix) for _, _, ix in got] == [
        len(indices[i : i + batch_size]) for i in range(0, 13, batch_size)
    ]
    assert torch.equal(torch.cat([ix for _, _, ix in got]), torch.from_numpy(indices))
    for x, y, ix in got:
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        assert torch.equal(x, cache.batch(ix.numpy()).float() / 255)
        assert torch.equal(y, torch.from_numpy(labels[ix.numpy()]))


def test_rows_into_a_buffer_equal_rows(cache):
    ix = np.array([1, 4, 5, 22])
    out = np.empty((4, 3, 24, 24), np.uint8)
    assert cache.store.rows(ix, out=out) is out
    np.testing.assert_array_equal(out, cache.store.rows(ix))
    with pytest.raises(IndexError, match="outside"):
        cache.store.rows(np.array([0, 26]), out=np.empty((2, 3, 24, 24), np.uint8))


def test_stopping_early_stops_the_readers(cache):
    before = {t.name for t in threading.enumerate()}
    gen = device_batches(cache, np.arange(26), np.zeros(26, np.int64), torch.device("cpu"), 2, read_ahead=3)
    next(gen)
    assert any(t.name.startswith("rbvit-read") for t in threading.enumerate())
    gen.close()
    assert not {t.name for t in threading.enumerate() if t.name.startswith("rbvit-read")} - before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batches_equal_cpu_batches(cache):
    """Pinned buffers, the side copy stream and record_stream: the same values as the CPU path, even when
    the consumer's own work on the device is slow and allocates (so freed memory would be reused)."""
    indices = np.arange(26)
    labels = np.arange(26)
    cpu = list(device_batches(cache, indices, labels, torch.device("cpu"), 5))
    for (xc, yc, ic), (xg, yg, ig) in zip(
        cpu, device_batches(cache, indices, labels, torch.device("cuda"), 5)
    ):
        torch.cuda._sleep(10_000_000)  # a slow consumer on the main stream
        junk = torch.empty(xg.numel() * 4, device="cuda").fill_(7.0)  # memory churn
        assert xg.is_cuda and torch.equal(xg.cpu(), xc) and torch.equal(yg.cpu(), yc) and torch.equal(ig, ic)
        del junk


def test_to_device_matches_to():
    from robustbench_vit.device import to_device

    t = torch.arange(12, dtype=torch.float64).reshape(3, 4) / 7
    assert torch.equal(to_device(t, "cpu"), t) and to_device(t, "cpu", torch.float32).dtype == torch.float32
    assert torch.equal(to_device(t, "cpu", torch.float32), t.to(torch.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_to_device_on_cuda_is_exact_while_the_stream_is_busy():
    from robustbench_vit.device import to_device

    t = torch.rand(256, 1000, dtype=torch.float64)
    ref = t.clone()
    torch.cuda._sleep(50_000_000)  # the stream is busy: the copy is queued behind it
    got = to_device(t, "cuda", torch.float32)
    t.zero_()  # the caller may reuse its tensor at once: the copy reads a private pinned buffer
    assert got.dtype == torch.float32 and got.is_cuda
    assert torch.equal(got.cpu(), ref.float())
