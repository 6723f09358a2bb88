"""One flipped bit anywhere in a results file or a cache file is detected (recomputed, logged) or
provably harmless: no flip changes a reported number, and none stops a later run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from robustbench_vit.engine.runner import evaluate
from robustbench_vit.storage.reading import load_results
from tests.helpers import CIFAR10_TEST, needs_cifar

RNG = np.random.default_rng(24)


def flip(path, bit: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(raw))


def values(df):
    return df.sort_values(["condition", "metric"]).set_index(["condition", "metric"]).value


@pytest.fixture(scope="module")
def run(tmp_path_factory, cifar_card):
    root = tmp_path_factory.mktemp("flips")

    def ev(out, cache):
        return evaluate(
            str(cifar_card),
            "clean",
            data=str(CIFAR10_TEST),
            limit=20,
            out=str(out),
            cache_dir=str(cache),
            progress=False,
        )

    truth = values(ev(root / "out", root / "cache"))
    return root, ev, truth


@needs_cifar
def test_flipped_bits_in_a_results_file_never_reach_a_reader(run):
    root, _, truth = run
    (file,) = (root / "out" / "runs").rglob("*.parquet")
    pristine = file.read_bytes()
    nbits = len(pristine) * 8
    for bit in RNG.choice(nbits, size=400, replace=False):
        file.write_bytes(pristine)
        flip(file, int(bit))
        read = load_results(root / "out", expand_params=False)
        if len(read):  # a flip the reader cannot see (it changed no decoded value) ...
            assert values(read).equals(truth), f"bit {bit} changed a value"  # ... is harmless
    file.write_bytes(pristine)


@needs_cifar
def test_a_damaged_results_file_is_recomputed_on_resume(run):
    root, ev, truth = run
    out = root / "out2"
    ev(out, root / "cache")
    (file,) = (out / "runs").rglob("*.parquet")
    pristine = file.read_bytes()
    for bit in RNG.choice(len(pristine) * 8, size=12, replace=False):
        file.write_bytes(pristine)
        flip(file, int(bit))
        assert values(ev(out, root / "cache")).equals(truth)
        assert values(load_results(out, expand_params=False)).equals(truth)
        for aside in file.parent.glob("_corrupt-*"):
            aside.unlink()
        (file,) = (out / "runs").rglob("*.parquet")


@needs_cifar
def test_flipped_bits_in_a_run_marker_never_change_which_run_is_read(run):
    """The ``_seen-`` marker decides which of two runs of one model a reader takes. Every single-bit flip
    in it is caught by its SHA-256 (the marker is then ignored, with a warning) or changes nothing."""
    import json

    from robustbench_vit.storage.reading import _seen_times

    root, ev, _ = run
    out = root / "out-marker"
    ev(out, root / "cache")
    (marker,) = (out / "runs").rglob("_seen-*.json")
    pristine = marker.read_bytes()
    truth = _seen_times(out / "runs")
    assert list(truth) == [json.loads(pristine)["run_id"]]
    for bit in range(len(pristine) * 8):
        marker.write_bytes(pristine)
        flip(marker, bit)
        assert _seen_times(out / "runs") in ({}, truth), f"bit {bit} moved a preference"
    marker.write_bytes(pristine)
    renamed = marker.with_name("_seen-other-0123456789ab.json")
    marker.rename(renamed)
    assert _seen_times(out / "runs") == {}  # a marker copied under another run's name names nothing


@needs_cifar
@pytest.mark.parametrize("name", ["images.npy", "filled.npy", "checksums.npy", "sources.npy", "identity"])
def test_flipped_bits_in_cache_files_are_rebuilt_never_fatal(run, name):
    root, ev, truth = run
    cache = root / f"cache-{name}"
    shutil.copytree(root / "cache", cache)
    if name == "identity":
        paths = sorted((cache / "identity").glob("*.npz"))
    else:
        paths = sorted(cache.glob(f"*/{name}"))
    assert paths
    for k in range(6):
        for path in paths:
            pristine = path.read_bytes()
            # headers first (where a flip used to be fatal), then anywhere in the file
            bit = (
                int(RNG.integers(0, min(len(pristine), 128) * 8))
                if k < 3
                else int(RNG.integers(0, len(pristine) * 8))
            )
            flip(path, bit)
        out = root / f"out-{name}-{k}"
        assert values(ev(out, cache)).equals(truth), f"{name}: flip {k} changed a number"
        shutil.rmtree(out)


@needs_cifar
def test_flipped_bits_in_the_transfer_source_flags_never_move_the_population(
    tmp_path, cifar_card, cifar_cnn_card
):
    """The source-correct flags decide the both_correct population: they are CRC-checked rows, so a damaged
    flag is recomputed instead of moving an image in or out of the population."""
    params = {"source": str(cifar_card), "attack": "fgsm"}

    def ev(out):
        return evaluate(
            str(cifar_cnn_card), "transfer", data=str(CIFAR10_TEST), limit=40, out=str(out),
            cache_dir=str(tmp_path / "cache"), progress=False, suite_params=params,
        )  # fmt: skip

    truth = values(ev(tmp_path / "out"))
    (flags,) = (tmp_path / "cache").rglob("source_correct/images.npy")
    header = flags.read_bytes()[:128]
    offset = len(header) if b"\n" not in header else header.index(b"\n") + 1
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.data.subset import stratified_limit

    evaluated = stratified_limit(open_dataset(CIFAR10_TEST)[1].targets, 40, 0)
    for k, row in enumerate(RNG.choice(evaluated, size=6, replace=False)):  # a flag of an evaluated image
        raw = bytearray(flags.read_bytes())
        raw[offset + int(row)] ^= 1 << int(RNG.integers(0, 8))
        flags.write_bytes(bytes(raw))
        assert values(ev(tmp_path / f"out{k}")).equals(truth), k
