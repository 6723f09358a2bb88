"""Faults under load: a Ray worker killed mid-cell, and concurrent evals on one cache and results folder
under random kill -9s. Afterwards nothing is lost or duplicated and the values equal undisturbed runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from robustbench_vit.storage.reading import load_results
from tests.helpers import CIFAR10_TEST, needs_cifar

RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]
KEY = ["run_id", "model", "suite", "dataset", "condition", "metric"]

#: a tiny CIFAR model as a module:factory entry point that SIGKILLs its own process after a number of
#: forward passes, once (the marker file makes the retry run through)
FAULTY = textwrap.dedent("""
    import os, signal
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
            self.fc = torch.nn.Linear(8, 10)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            marker = os.environ.get("RBVIT_TEST_KILL_MARKER")
            if marker and self.calls == int(os.environ.get("RBVIT_TEST_KILL_AFTER", "9")) and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    def build():
        cfg = {"input_size": [3, 32, 32], "crop_pct": 1.0, "interpolation": "bilinear",
               "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "label_space": "cifar10"}
        return Net().eval(), cfg
""")

SWEEP = """
[sweep]
data = "{data}"
limit = 40
batch_size = 10
models = ["faulty_cifar:build"]
[[suite]]
name = "occlusion"
params = {{ fractions = [0.0, 0.2, 0.4, 0.6, 0.8], grid = "4" }}
"""


def _values(out: Path) -> pd.Series:
    df = load_results(out)
    assert not df.duplicated(KEY).any(), "duplicated rows"
    return df.set_index(KEY[1:])["value"].sort_index()


@needs_cifar
def test_ray_worker_killed_mid_cell_is_retried_without_duplicates(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "faulty_cifar.py").write_text(FAULTY)
    toml = tmp_path / "sweep.toml"
    toml.write_text(SWEEP.format(data=CIFAR10_TEST))
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RBVIT_CACHE": str(tmp_path / "cache"),
    }
    calm = subprocess.run(
        [*RBVIT, "sweep", "--allow-entrypoints", str(toml), "--out", str(tmp_path / "calm")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert calm.returncode == 0, calm.stderr[-2000:]
    marker = tmp_path / "killed-once"
    env_kill = {**env, "RBVIT_TEST_KILL_MARKER": str(marker), "RBVIT_TEST_KILL_AFTER": "5"}
    r = subprocess.run(
        # conditions split over 3 tasks per cell (condition-level Ray work); one task is killed mid-way
        [
            *RBVIT,
            "sweep",
            "--allow-entrypoints",
            str(toml),
            "--out",
            str(tmp_path / "ray"),
            "--executor",
            "ray",
            "--shards",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env_kill,
    )
    assert marker.exists(), "the worker was never killed: the fault was not injected"
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    pd.testing.assert_series_equal(_values(tmp_path / "ray"), _values(tmp_path / "calm"))


#: (suite, limit, params) of the four concurrent evaluations
JOBS = [
    ("clean", 60, []),
    ("occlusion", 50, ["-p", "fractions=0,0.3,0.6,0.9", "-p", "grid=4"]),
    ("patch_shuffle", 40, ["-p", "grids=1,2,4,8"]),
    ("clean", 90, []),
]


def _cmd(card: Path, out: Path, job: tuple) -> list[str]:
    suite, limit, params = job
    return [
        *RBVIT,
        "eval",
        "-m",
        str(card),
        "-s",
        suite,
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        str(limit),
        "--batch-size",
        "10",
        "--out",
        str(out),
        *params,
    ]


@pytest.mark.slow
@needs_cifar
def test_soak_concurrent_evals_with_random_kills(tmp_path, cifar_card):
    """Four evaluations share one cache and one results folder; random kill -9s for a bounded time,
    then every job is rerun to completion: zero lost, zero duplicated, values as undisturbed runs."""
    rng = random.Random(0)
    shared, env = tmp_path / "shared", {**os.environ, "RBVIT_CACHE": str(tmp_path / "cache-shared")}
    procs = {
        i: subprocess.Popen(
            _cmd(cifar_card, shared, j), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for i, j in enumerate(JOBS)
    }
    kills, deadline = 0, time.time() + 60  # bounded: at most 6 kills in a minute
    while time.time() < deadline and kills < 6:
        time.sleep(rng.uniform(1.0, 4.0))
        running = [i for i, p in procs.items() if p.poll() is None]
        if not running:
            break
        victim = rng.choice(running)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        kills += 1
        procs[victim] = subprocess.Popen(
            _cmd(cifar_card, shared, JOBS[victim]),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    for p in procs.values():
        p.wait(timeout=600)
    for job in JOBS:  # the final rerun: completes whatever a kill left
        r = subprocess.run(
            _cmd(cifar_card, shared, job), env=env, capture_output=True, text=True, timeout=600
        )
        assert r.returncode == 0, r.stderr[-2000:]
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    for job in JOBS:  # the undisturbed reference, in this process (no kills to survive)
        argv = _cmd(cifar_card, tmp_path / "calm", job)[len(RBVIT) :]
        r = CliRunner().invoke(main, ["-q", *argv, "--cache-dir", str(tmp_path / "cache-calm")])
        assert r.exit_code == 0, r.output[-2000:]
    assert kills >= 3
    pd.testing.assert_series_equal(_values(shared), _values(tmp_path / "calm"))
    leftovers = [p for p in shared.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
