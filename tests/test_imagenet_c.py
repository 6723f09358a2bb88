"""The imagenet_c suite on an on-disk ImageNet-C fixture built from the shared samples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from robustbench_vit.storage.reading import load_results
from tests.helpers import IMAGENET_SAMPLES, REFERENCE, needs_imagenet
from tests.identity_world import Counter

CSV = REFERENCE / "robustbench_imagenet_c_unaggregated.csv"
RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]


def _imagenet_c_fixture(root: Path, n: int = 12) -> Path:
    from imagecorruptions import corrupt

    files = sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[::83][:n]
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224))
        arr = np.asarray(img)
        for c in ("brightness", "gaussian_noise"):
            for sev in (1, 3, 5):
                out = root / c / str(sev) / f.parent.name
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.uint8(corrupt(arr, corruption_name=c, severity=sev))).save(
                    out / f.name, quality=85
                )
    return root


@needs_imagenet
def test_imagenet_c_fixture_end_to_end(tmp_path):
    root = _imagenet_c_fixture(tmp_path / "imagenet-c")
    r = subprocess.run(
        [
            *RBVIT,
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            "imagenet_c",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "-p",
            f"clean_data={IMAGENET_SAMPLES}",
            "--limit",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    df = load_results(tmp_path / "out")
    cells = df[(df.metric == "error") & (df.corruption != "clean")]
    assert (
        len(cells) == 6
        and set(cells.corruption) == {"brightness", "gaussian_noise"}
        and (cells.n == 12).all()
    )
    assert len(set(df.preprocessing)) == 1 and df.preprocessing.iloc[0].startswith(
        "resize 160 / crop 160"
    )  # crop only
    clean = df[(df.metric == "error") & (df.corruption == "clean")]
    assert len(clean) == 1 and not json.loads(clean.params.iloc[0])["clean_preprocessing"].startswith(
        "resize 160 "
    )
    assert "mce" not in set(df.metric), "mCE must not be computed from 2 of 15 corruptions"
    assert {"mean_corruption_accuracy"} <= set(df.metric)
    r = subprocess.run(
        [
            *RBVIT,
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            "imagenet_c",
            "--data",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 4 and "not found" in r.stderr


@needs_imagenet
def test_the_next_cell_is_decoded_while_the_current_one_runs(tmp_path, monkeypatch):
    """Every cell after the first is decoded by the prefetch thread, cells a resumed run skips are not
    decoded at all, and the rows equal those of a run without prefetching."""
    import threading

    import robustbench_vit as rbvit
    from robustbench_vit.data.cache import ImageCache
    from robustbench_vit.suites.imagenet_c import ImageNetC

    root = _imagenet_c_fixture(tmp_path / "imagenet-c", n=4)
    fills: list[tuple[str, str]] = []
    real = ImageCache.ensure

    def recording(self, indices, **kw):  # type: ignore[no-untyped-def]
        n = real(self, indices, **kw)
        if n:
            cell = "/".join(Path(self.dataset.root).parts[-2:])
            fills.append((cell, threading.current_thread().name))
        return n

    monkeypatch.setattr(ImageCache, "ensure", recording)
    kw = dict(data=str(root), progress=False, pretrained=False, limit=4, batch_size=2)

    def run(out: str, cache: str):  # type: ignore[no-untyped-def]
        return rbvit.evaluate(
            "timm:test_resnet", "imagenet_c", out=str(tmp_path / out), cache_dir=str(tmp_path / cache), **kw
        )

    with_prefetch = run("a", "ca")
    cells = [c for c, _ in fills]
    assert len(cells) == len(set(cells)) == 6
    # the first cell is decoded by the run's own thread while the second is already being prefetched:
    # which of the two finishes first is a race, so the check is by thread, not by order
    assert [c for c, t in fills if t != "rbvit-prefetch"] == ["brightness/1"]

    fills.clear()
    monkeypatch.setattr(ImageNetC, "upcoming", lambda self, ctx, conds: None)
    without = run("b", "cb")
    assert all(t != "rbvit-prefetch" for _, t in fills)
    key = ["condition", "metric"]
    a, b = (f.set_index(key)["value"].sort_index() for f in (with_prefetch, without))
    assert list(a.index) == list(b.index) and np.allclose(a.values, b.values, equal_nan=True)

    # a resumed run: the finished cells are neither computed nor decoded again
    fills.clear()
    monkeypatch.undo()
    monkeypatch.setattr(ImageCache, "ensure", recording)
    for f in (tmp_path / "a").rglob("*gaussian_noise*"):
        f.unlink()
    run("a", "cc")
    assert sorted(c for c, _ in fills) == ["gaussian_noise/1", "gaussian_noise/3", "gaussian_noise/5"]


@needs_imagenet
def test_a_cell_image_replaced_in_place_recomputes_that_cell_only(tmp_path, monkeypatch):
    """A condition that reads its own folder is reused only while that folder's images are unchanged:
    one JPEG of one cell replaced in place (name kept, mtime restored) recomputes that cell alone."""
    import os

    import robustbench_vit as rbvit
    from robustbench_vit.data import digests

    monkeypatch.setattr(digests, "SETTLED_NS", -(10**12))  # trust the young files' stat tuples
    root = _imagenet_c_fixture(tmp_path / "imagenet-c", n=4)
    kw = dict(data=str(root), progress=False, pretrained=False, limit=4, batch_size=2)

    def run(out: str = "out", cache: str = "cache"):  # type: ignore[no-untyped-def]
        df = rbvit.evaluate(
            "timm:test_resnet", "imagenet_c", out=str(tmp_path / out), cache_dir=str(tmp_path / cache), **kw
        )
        return df.query("metric == 'nll'").set_index("condition")["value"]

    before = run()
    computed = Counter(monkeypatch).names
    assert run().equals(before) and computed == []  # unchanged: every cell reused

    target = sorted((root / "brightness" / "3").glob("*/*.JPEG"))[0]
    donor = sorted((root / "brightness" / "3").glob("*/*.JPEG"))[1]
    st = target.stat()
    target.write_bytes(donor.read_bytes())
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = run()
    assert computed == ["brightness/3"]
    truth = run("fresh-out", "fresh-cache")
    assert after["brightness/3"] == truth["brightness/3"] != before["brightness/3"]
    runs = tmp_path / "out" / "runs"
    assert len(list(runs.rglob("_stale-*brightness_3@*.parquet.aside"))) == 1  # the old cell, moved aside


@needs_imagenet
def test_folders_no_condition_reads_are_named(tmp_path, caplog):
    """A misspelt corruption (``Fog``, ``glass-blur``) or a severity outside 1-5 was left out without a word:
    the table then lacked a corruption the user believed evaluated. The log names each such folder."""
    from robustbench_vit.suites import make_suite

    root = _imagenet_c_fixture(tmp_path / "imagenet-c", n=2)
    for extra in ("Fog/1/n01440764", "glass-blur/3/n01440764", "brightness/6/n01440764", ".cache/x"):
        (root / extra).mkdir(parents=True)
    make_suite("imagenet_c").open_data(str(root), None, None)
    line = next(r.getMessage() for r in caplog.records if "not evaluated" in r.getMessage())
    assert line.endswith(
        "3 folders are no ImageNet-C corruption/severity (1-5) and are not evaluated: "
        "Fog, brightness/6, glass-blur"
    )
    caplog.clear()
    for extra in ("Fog", "glass-blur", "brightness/6"):
        shutil.rmtree(root / extra)
    make_suite("imagenet_c").open_data(str(root), None, None)
    assert not [r for r in caplog.records if "not evaluated" in r.getMessage()]
