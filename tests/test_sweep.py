"""Declarative sweeps, resumability, the Ray executor, compare and report (issue 7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_vit.storage.reading import load_results
from tests.helpers import IMAGENET_SAMPLES, ROOT, needs_effnet, needs_imagenet

RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]

TINY = f"""
[sweep]
data = "{IMAGENET_SAMPLES}"
limit = 20
batch_size = 20
models = [{{ ref = "timm:test_vit", pretrained = false }}, {{ ref = "timm:test_resnet", pretrained = false }}]
[[suite]]
name = "clean"
save_samples = true
[[suite]]
name = "occlusion"
params = {{ fractions = [0.0, 0.3, 0.6], grid = "8" }}
[[suite]]
name = "patch_shuffle"
params = {{ grids = ["1", "2", "4", "8"] }}
"""

KEY = ["model", "suite", "dataset", "condition", "metric", "source_model"]


def _tiny(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY + extra)
    return p


def _values(out: Path) -> pd.Series:
    df = load_results(out)
    df["source_model"] = df["source_model"].fillna("")
    assert not df.duplicated(KEY).any(), "duplicate rows"
    return df.set_index(KEY)["value"].sort_index()


@needs_imagenet
def test_sweep_then_rerun_runs_zero_cells_and_failures_do_not_crash(tmp_path):
    toml = _tiny(
        tmp_path, '[[suite]]\nname = "occlusion"\nparams = { grid = "7" }\n'
    )  # 7 does not divide 160: a configuration error, found when the model's input size is known
    out = tmp_path / "out"
    sweep = [*RBVIT, "sweep", str(toml), "--out", str(out)]
    r = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
    assert r.returncode == 1, r.stderr  # failures are reported with exit 1, after every other cell ran
    assert "done=6 skipped=0 failed=0 config-failed=2" in r.stderr
    assert "does not divide" in r.stdout
    errors = sorted((out / "cells").glob("*.error.json"))
    assert len(errors) == 2 and all(json.loads(e.read_text())["kind"] == "config" for e in errors)
    stamps = [e.stat().st_mtime_ns for e in errors]
    r = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
    # the same file: configuration failures are reported again, not retried
    assert "done=0 skipped=6 failed=0 config-failed=2" in r.stderr
    assert [e.stat().st_mtime_ns for e in errors] == stamps
    toml.write_text(toml.read_text() + "# edited\n")  # the file changed: they are retried
    r = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
    assert "done=0 skipped=6 failed=0 config-failed=2" in r.stderr
    assert [e.stat().st_mtime_ns for e in errors] != stamps


def test_a_run_time_failure_is_retried_on_the_next_sweep(tmp_path, monkeypatch):
    from robustbench_vit.engine import runner
    from robustbench_vit.sweeps import run as sweep

    toml = tmp_path / "s.toml"
    toml.write_text('[sweep]\nmodels = ["timm:test_vit"]\n[[suite]]\nname = "clean"\n')
    spec = sweep.load_sweep(toml)

    def boom(*a, **k):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(runner, "evaluate", boom)
    (st,) = sweep.run_sweep(spec, str(tmp_path / "out"))
    assert st.status == "failed" and "illegal memory access" in st.error
    assert [s.status for s in sweep.plan(spec, tmp_path / "out")] == ["todo"]


@needs_imagenet
def test_killed_sweep_resumes_without_duplicates_or_gaps(tmp_path):
    toml = _tiny(tmp_path)
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    assert (
        subprocess.run(
            [*RBVIT, "sweep", str(toml), "--out", str(ref_out)], capture_output=True, timeout=900
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [*RBVIT, "sweep", str(toml), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(list((out / "runs").rglob("*.parquet"))) >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = subprocess.run(
        [*RBVIT, "sweep", str(toml), "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr
    pd.testing.assert_series_equal(_values(out), _values(ref_out))


@needs_imagenet
def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray")
    toml = _tiny(tmp_path)
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert (
        subprocess.run(
            [*RBVIT, "sweep", str(toml), "--out", str(local)], capture_output=True, timeout=900
        ).returncode
        == 0
    )
    r = subprocess.run(
        [*RBVIT, "sweep", str(toml), "--out", str(ray_out), "--executor", "ray"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    pd.testing.assert_series_equal(_values(ray_out), _values(local))


@needs_imagenet
def test_compare_and_report(tmp_path):
    toml = _tiny(tmp_path)
    out = tmp_path / "out"
    assert (
        subprocess.run(
            [*RBVIT, "sweep", str(toml), "--out", str(out)], capture_output=True, timeout=900
        ).returncode
        == 0
    )
    r = subprocess.run(
        [*RBVIT, "compare", "test_vit", "test_resnet", "-r", str(out), "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 20 and 0.0 <= res["p_value"] <= 1.0
    prefixed = subprocess.run(
        [*RBVIT, "compare", "timm:test_vit", "test_resnet", "-r", str(out), "--json"],
        capture_output=True,
        text=True,
    )
    assert prefixed.returncode == 0 and json.loads(prefixed.stdout)["n"] == 20, prefixed.stderr  # one key
    same = subprocess.run(  # two names of one stored model: p = 1 by construction, so refused
        [*RBVIT, "compare", "timm:test_vit", "test_vit", "-r", str(out)], capture_output=True, text=True
    )
    assert same.returncode == 2 and "compare needs two different models" in same.stderr, same.stderr
    r = subprocess.run(
        [*RBVIT, "compare", "test_vit", "nope", "-r", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 4 and "--save-samples" in r.stderr
    assert (
        "models with per-sample rows there: test_resnet.random, test_vit.random" in r.stderr
    )  # what to name
    assert subprocess.run([*RBVIT, "leaderboard", str(out)], capture_output=True).returncode == 0
    report = tmp_path / "report.html"
    r = subprocess.run([*RBVIT, "report", str(out), "--html", str(report)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page), "report must be self-contained"
    n_imgs = page.count("data:image/png;base64,")
    assert n_imgs >= 2 and "<h3>clean on imagenet-samples</h3>" in page
    text = re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[^'\"]+", "", page))
    assert "`" not in text and not re.search(r"(^|\s)_\w", text), "raw Markdown in the report"
    assert "<th>col</th>" not in page and "<em>ranked by <code>" in page
    assert page.count('class="ci"') >= 3  # the Wilson intervals are shown
    occlusion = page.split("<h3>occlusion on imagenet-samples</h3>")[1].split("<section>")[0]
    assert (
        "<table>" in occlusion and 'alt="occlusion on imagenet-samples"' in occlusion
    )  # figure by its table
    assert "overflow-x:auto" in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:  # render headlessly and check every figure decoded
        js = tmp_path / "dump.html"
        r = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--dump-dom",
                "--virtual-time-budget=3000",
                report.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        js.write_text(r.stdout)
        assert r.stdout.count("<img") == n_imgs


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_committed_ci_leaderboard_is_fresh(tmp_path):
    """CI regenerates the tiny leaderboard from sweeps/ci.toml; the committed results/ copy must match."""
    out = tmp_path / "results"
    # the committed sweep names ../shared/data; the tests read the shared data wherever RBVIT_DATA says
    toml = tmp_path / "ci.toml"
    toml.write_text(
        (ROOT / "sweeps" / "ci.toml")
        .read_text()
        .replace("../shared/data/imagenet-samples/val", str(IMAGENET_SAMPLES))
    )
    r = subprocess.run(
        [*RBVIT, "sweep", str(toml), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert subprocess.run([*RBVIT, "leaderboard", str(out)], capture_output=True).returncode == 0
    fresh = pd.read_parquet(out / "leaderboard.parquet")
    committed = pd.read_parquet(ROOT / "results" / "leaderboard.parquet")
    key = ["suite", "dataset", "condition", "metric", "source_model", "model"]
    a, b = fresh.set_index(key)["value"].sort_index(), committed.set_index(key)["value"].sort_index()
    assert list(a.index) == list(b.index), (
        "stale results/: rerun `rbvit sweep sweeps/ci.toml && rbvit leaderboard results`"
    )
    assert np.allclose(a.values, b.values, atol=1e-3, equal_nan=True), (
        "stale values in results/leaderboard.parquet"
    )
    assert (ROOT / "results" / "LEADERBOARD.md").read_text().startswith("# Leaderboard")
    # every figure of the regenerated rows passes the mechanical layout check (text inside, legends beside)
    import logging

    from robustbench_vit.results.figures.base import layout_problems  # noqa: F401 - the check _save runs
    from robustbench_vit.results.figures.plots import render_figures
    from robustbench_vit.storage.reading import load_results

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("robustbench_vit.results.figures.base")
    logger.addHandler(handler)
    try:
        figures = render_figures(load_results(out), tmp_path / "figures")
    finally:
        logger.removeHandler(handler)
    assert len(figures) >= 6 and [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []


def test_per_model_overrides_reach_only_that_models_cells(tmp_path):
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.sweeps.run import load_sweep

    toml = tmp_path / "s.toml"
    body = """[sweep]
batch_size = 64
models = [
  "timm:test_vit",
  { ref = "timm:test_resnet", batch_size = 8, dtype = "bf16", params = { occlusion = { grid = "4" } } },
]
[[suite]]
name = "occlusion"
params = { grid = "8", fractions = [0.5] }
[[suite]]
name = "clean"
"""
    toml.write_text(body)
    cells = {(c.model, c.suite): c.options for c in load_sweep(toml).cells}
    assert dict(cells["timm:test_vit", "occlusion"].suite_params) == {"grid": "8", "fractions": (0.5,)}
    assert dict(cells["timm:test_resnet", "occlusion"].suite_params) == {"grid": "4", "fractions": (0.5,)}
    assert cells["timm:test_vit", "clean"].batch_size == 64
    # the status table tells a suite's cells apart by their parameters
    labels = {c.label() for c in load_sweep(toml).cells}
    assert "timm:test_vit | occlusion (grid=8, fractions=0.5) | default | seed 0" in labels
    assert "timm:test_resnet | occlusion (grid=4, fractions=0.5) | default | seed 0" in labels
    assert "timm:test_vit | clean | default | seed 0" in labels
    assert (
        cells["timm:test_resnet", "clean"].batch_size == 8
        and cells["timm:test_resnet", "clean"].dtype == "bf16"
    )
    toml.write_text(body.replace("params = { occlusion", "params = { occlusoin"))
    with pytest.raises(ConfigError, match="sets params for 'occlusoin'"):
        load_sweep(toml)
    toml.write_text(body.replace("batch_size = 8", "batchsize = 8"))
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_sweep(toml)
    toml.write_text(body.replace('grid = "4"', "gridz = 4"))
    with pytest.raises(ConfigError, match="no parameter gridz"):
        load_sweep(toml)
