"""End-to-end through the `rbvit` command on the shared real data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from robustbench_vit.cli.commands import main
from robustbench_vit.storage.reading import load_results
from tests.helpers import CIFAR10_TEST, error_lines, needs_cifar

RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RBVIT, *args], capture_output=True, text=True, timeout=600)


def test_ls_models_suites_datasets():
    r = CliRunner().invoke(main, ["ls", "models", "--json"])
    assert r.exit_code == 0
    models = {m["name"]: m for m in map(json.loads, r.output.splitlines())}  # one object per line
    assert models["vit_b16"]["family"] == "vit" and models["resnet50"]["params_m"] == 25.56
    r = CliRunner().invoke(main, ["ls", "suites", "--json"])
    assert {"clean", "occlusion", "patch_shuffle"} <= {
        s["name"] for s in map(json.loads, r.output.splitlines())
    }
    assert CliRunner().invoke(main, ["ls", "datasets"]).exit_code == 0


def test_unknown_model_and_suite_one_line_errors(tmp_path):
    r = run("eval", "--model", "vit_b61", "--suite", "clean", "--data", str(tmp_path))
    assert r.returncode == 2 or r.returncode == 3
    assert "Did you mean 'vit_b16'" in r.stderr and "Traceback" not in r.stderr
    r = run(
        "eval", "--model", "timm:test_vit", "--suite", "clena", "--data", str(tmp_path), "--random-weights"
    )
    assert r.returncode == 3 and "Did you mean 'clean'" in r.stderr


def test_missing_data_folder(tmp_path):
    r = run(
        "eval", "-m", "timm:test_vit", "-s", "clean", "--data", str(tmp_path / "missing"), "--random-weights"
    )
    assert r.returncode == 4 and "data folder not found" in r.stderr and len(error_lines(r.stderr)) == 1


def test_unreadable_image_names_the_file(tmp_path, cifar_card):
    (tmp_path / "d" / "cat").mkdir(parents=True)
    (tmp_path / "d" / "cat" / "bad.png").write_bytes(b"garbage")
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "clean",
        "--data",
        str(tmp_path / "d"),
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 4 and "bad.png" in r.stderr


def test_bad_checkpoint(tmp_path, cifar_card):
    (tmp_path / "w.pth").write_bytes(b"\x80\x04not a checkpoint")
    (tmp_path / "cat").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "cat" / "0.png")
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "clean",
        "--checkpoint",
        str(tmp_path / "w.pth"),
        "--data",
        str(tmp_path),
    )
    assert r.returncode == 5 and "weights-only" in r.stderr


@needs_cifar
def test_card_on_cifar_clean_no_resizing(tmp_path, cifar_card):
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "clean",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "200",
        "--out",
        str(tmp_path),
        "--json",
        "--save-samples",
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {x["metric"] for x in rows} == {"top1", "top5", "nll", "ece", "brier"}
    df = load_results(tmp_path)
    assert (
        (df["input_size"] == 32).all() and (df["resize_size"] == 32).all() and (df["crop_pct"] == 1.0).all()
    )
    assert json.loads(df["mean"].iloc[0]) == [0.4914, 0.4822, 0.4465] and (df["n"] == 200).all()
    from robustbench_vit.storage.reading import load_samples

    s = load_samples(tmp_path)
    assert len(s) == 200 and s["correct"].mean() == pytest.approx(df.set_index("metric").value["top1"])


@needs_cifar
def test_occlusion_and_shuffle_on_cifar(tmp_path, cifar_card):
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "occlusion",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "100",
        "-p",
        "grid=8",
        "-p",
        "repeats=2",
        "-p",
        "fractions=0,0.5",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "patch_shuffle",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "100",
        "-p",
        "grids=1,2,4,8",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    df = load_results(tmp_path)
    occ = df[(df.suite == "occlusion") & (df.metric == "top1")]
    assert len(occ) == 4 and set(occ["fraction"]) == {0.0, 0.5} and set(occ["grid"]) == {"8x8"}
    assert (
        set(occ["fill"]) == {"zero"} and set(occ["mask_mode"]) == {"batch"} and set(occ["repeat"]) == {0, 1}
    )
    assert set(df[df.suite == "occlusion"].metric) >= {"top1", "top1_mean", "top1_std", "auc"}
    shuf = df[(df.suite == "patch_shuffle") & (df.metric == "top1")]
    assert set(shuf["grid"]) == {"1x1", "2x2", "4x4", "8x8"}
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "patch_shuffle",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "10",
        "-p",
        "grids=3,4",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 2 and "do not divide the 32x32 input" in r.stderr
    r = run("plot", str(tmp_path), "--figures", str(tmp_path / "fig"))
    assert r.returncode == 0, r.stderr
    for name in ("occlusion-cifar10.png", "patch_shuffle-cifar10.png"):
        assert (tmp_path / "fig" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_cifar
def test_sigkill_midway_then_resume_has_no_duplicates_or_losses(tmp_path, cifar_card):
    out = tmp_path / "res"
    args = [
        *RBVIT,
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "occlusion",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "3000",
        "-p",
        "grid=8",
        "-b",
        "250",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    files: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        files = list(out.rglob("*.parquet")) if out.exists() else []
        if len(files) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed; make the test workload larger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = load_results(out)
    assert 3 <= partial.condition.nunique() < 10
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    full = load_results(out)
    per_cond = full[full.metric == "top1"].groupby("condition").size()
    assert len(per_cond) == 10 and (per_cond == 1).all(), "each condition exactly once"
    assert not list(out.rglob(".*tmp*"))
    # the resumed run reproduces the values of an uninterrupted one
    ref = subprocess.run([*args[:-1], str(tmp_path / "ref")], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0
    a = full[full.metric == "top1"].set_index("condition")["value"].sort_index()
    b = load_results(tmp_path / "ref").query("metric == 'top1'").set_index("condition")["value"].sort_index()
    pd.testing.assert_series_equal(a, b)
    # a rerun skips everything
    t0 = time.time()
    assert subprocess.run(args, capture_output=True, timeout=600).returncode == 0
    assert len(load_results(out)) == len(full) and time.time() - t0 < 60


@needs_cifar
def test_leaderboard_command(tmp_path, cifar_card, cifar_cnn_card):
    for card in (cifar_card, cifar_cnn_card):
        r = run(
            "eval",
            "-m",
            str(card),
            "-s",
            "clean",
            "--data",
            str(CIFAR10_TEST),
            "--limit",
            "50",
            "--out",
            str(tmp_path),
        )
        assert r.returncode == 0, r.stderr
    r = run("leaderboard", str(tmp_path))
    assert r.returncode == 0, r.stderr
    board = pd.read_parquet(tmp_path / "leaderboard.parquet")
    assert set(board.model) == {"cifar_vit", "cifar_resnet10t"} and {"ci_low", "ci_high", "rank"} <= set(
        board.columns
    )
    md = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## clean on cifar10" in md and "cifar_resnet10t" in md


@needs_cifar
def test_salient_and_non_salient_occlusion_with_cached_saliency(tmp_path, cifar_card):
    args = [
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "occlusion",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "30",
        "-p",
        "modes=salient,non_salient",
        "-p",
        f"saliency_model={cifar_card}",
        "-p",
        "lambdas=0.5,1.0",
        "--out",
        str(tmp_path / "o"),
    ]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    df = load_results(tmp_path / "o")
    top1 = df[df.metric == "top1"].set_index("condition")["value"]
    clean = run(
        "eval", "-m", str(cifar_card), "-s", "clean", "--data", str(CIFAR10_TEST), "--limit", "30", "--json",
        "--out", str(tmp_path / "clean"),
    )  # fmt: skip
    clean_top1 = next(json.loads(x)["value"] for x in clean.stdout.splitlines() if '"top1"' in x)
    assert top1["non_salient/lambda=1.00"] == clean_top1  # keeping all attention mass keeps the image
    maps = list(Path(os.environ["RBVIT_CACHE"]).rglob("saliency-*/filled.npy"))
    assert maps, "saliency maps are cached next to the decoded images"
