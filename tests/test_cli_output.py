"""What the `rbvit` command prints and accepts: JSON lines, the eval summary, timm validate.py's
preprocessing flags, option help and defaults, and the name of every output option."""

from __future__ import annotations

import json

from click.testing import CliRunner

from robustbench_vit.cli.commands import main
from tests.helpers import CIFAR10_TEST, needs_cifar


@needs_cifar
def test_json_is_one_object_per_line_for_every_command(tmp_path, cifar_card):
    out = tmp_path / "res"
    runner = CliRunner()
    calls = [
        [
            "eval",
            "-m",
            str(cifar_card),
            "-s",
            "clean",
            "--data",
            str(CIFAR10_TEST),
            "--limit",
            "20",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
        ],
        ["leaderboard", str(out), "--json"],
        ["ls", "models", "--json"],
        ["ls", "suites", "--json"],
        ["ls", "datasets", "--json"],
        ["ls", "layers", "timm:test_vit", "--json"],
        ["ls", "suites", "pgd", "--json"],
    ]
    for args in calls:
        r = runner.invoke(main, ["--progress", "off", *args])
        assert r.exit_code == 0, (args, r.output[-500:])
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        strict = [json.loads(ln, parse_constant=_refuse_nan) for ln in lines]  # jq refuses NaN too
        assert lines and all(isinstance(obj, dict) for obj in strict), (args, lines[:2])


def _refuse_nan(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def test_eval_prints_a_summary_and_says_what_it_reused(tmp_path, cifar_card):
    """A person reads each suite's headline metrics in percent with intervals; --format long and the files
    keep every row; a rerun says how many conditions it reused."""
    args = [
        "--progress",
        "log",
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "clean,occlusion",
        "-p",
        "fractions=0,0.5",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "20",
        "--out",
        str(tmp_path / "res"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    first = CliRunner().invoke(main, [*args, "--format", "table"])
    assert first.exit_code == 0, first.output
    assert "top1 (%)" in first.output and "95% CI" in first.output and "summary/random" in first.output
    assert "fraction=0.5/top1" not in first.output  # per-condition rows stay in the files
    again = CliRunner().invoke(main, [*args, "--format", "long"])
    assert again.exit_code == 0 and "reused from" in again.output and "0 computed" in again.output
    assert "nll" in again.output and "brier" in again.output  # every row


@needs_cifar
def test_timm_validate_preprocessing_flags_are_recorded(tmp_path, cifar_card):
    """--img-size, --crop-pct, --interpolation, --mean, --std (timm validate.py's names) change what the
    model sees and are recorded in every row like any preprocessing; a bad value is one line, exit 2."""
    import robustbench_vit as rbvit
    from robustbench_vit.engine.runner import RunOptions

    base = dict(data=str(CIFAR10_TEST), limit=20, cache_dir=str(tmp_path / "c"))
    plain = rbvit.evaluate(str(cifar_card), "clean", RunOptions(**base))
    over = {
        "img_size": 32,
        "crop_pct": 0.8,
        "interpolation": "bicubic",
        "mean": (0.5,) * 3,
        "std": (0.25,) * 3,
    }
    df = rbvit.evaluate(str(cifar_card), "clean", RunOptions(**base, override_preprocessing=over))
    row = df.iloc[0]
    assert row["input_size"] == 32 and row["resize_size"] == 40 and row["crop_pct"] == 0.8
    assert (
        row["interpolation"] == "bicubic"
        and json.loads(row["mean"]) == [0.5] * 3
        and json.loads(row["std"]) == [0.25] * 3
    )
    assert (
        "overridden: img_size=32" in row["preprocessing_source"] and df.run_id.iat[0] != plain.run_id.iat[0]
    )
    r = CliRunner().invoke(
        main,
        [
            "eval",
            "-m",
            str(cifar_card),
            "-s",
            "clean",
            "--data",
            str(CIFAR10_TEST),
            "--limit",
            "5",
            "--mean",
            "0.5,x,0.5",
        ],
    )
    assert r.exit_code == 2 and "--mean takes comma-separated numbers" in r.output


def test_every_option_has_help_and_its_default():
    """rbvit -h is enough to use an option: every option says what it does, a default that is a value is
    shown, and no help text shows raw reStructuredText backticks."""
    import click

    problems = []

    def walk(cmd: click.Command, path: str) -> None:
        if "`" in (cmd.help or ""):
            problems.append(f"{path}: backticks in the command help")
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.hidden:  # a hidden compatibility alias is not in -h
                continue
            if not p.help:
                problems.append(f"{path} {p.opts[0]}: no help")
            elif "`" in p.help:
                problems.append(f"{path} {p.opts[0]}: backticks")
            concrete = isinstance(p.default, (str, int, float)) and not isinstance(p.default, bool)
            if concrete and not p.show_default and "default" not in (p.help or "").lower():
                problems.append(f"{path} {p.opts[0]}: default {p.default!r} not shown")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(main, "rbvit")
    assert problems == []


def test_out_always_names_a_results_folder(tmp_path):
    """-o/--out is a results folder for eval, sweep and reproduce; leaderboard, plot and report name what they
    write --parquet, --figures and --html, and their old -o still works with a note."""
    commands = {name: {o for p in cmd.params for o in p.opts} for name, cmd in main.commands.items()}
    assert {"-o", "--out"} <= commands["eval"] and {"-o", "--out"} <= commands["reproduce"]
    assert (
        "--parquet" in commands["leaderboard"]
        and "--figures" in commands["plot"]
        and "--html" in commands["report"]
    )
    for name in ("leaderboard", "plot", "report"):
        legacy = next(p for p in main.commands[name].params if "--out" in p.opts)
        assert legacy.hidden


def test_json_lines_are_strict_json():
    """A metric without a value (an attack success rate over no correctly classified image) is ``null``,
    never the bare ``NaN`` that jq and JavaScript refuse; numpy scalars are plain numbers."""
    import numpy as np
    import pandas as pd

    from robustbench_vit.cli.output import json_line

    line = json_line(
        {
            "value": float("nan"),
            "ci": [float("inf"), 0.25],
            "n": np.int64(3),
            "x": np.float32(0.5),
            "m": pd.NA,
        }
    )
    assert json.loads(line, parse_constant=_refuse_nan) == {
        "value": None,
        "ci": [None, 0.25],
        "n": 3,
        "x": 0.5,
        "m": None,
    }


def test_a_repeated_suite_option_adds_suites(monkeypatch):
    """``-s clean -s occlusion`` evaluates both suites, like ``-s clean,occlusion`` (a second ``-s`` used to
    replace the first, silently)."""
    import pandas as pd

    import robustbench_vit.api as api

    asked = []

    def fake_evaluate(model, suite, options, progress=None):
        asked.append(suite)
        return pd.DataFrame(columns=["model", "suite", "dataset", "condition", "metric", "value", "n"])

    monkeypatch.setattr(api, "evaluate", fake_evaluate)
    for argv in (["-s", "clean", "-s", "occlusion"], ["-s", "clean,occlusion"]):
        r = CliRunner().invoke(main, ["--progress", "off", "eval", "-m", "timm:test_vit", *argv, "--json"])
        assert r.exit_code == 0, r.output
    assert asked == ["clean,occlusion", "clean,occlusion"]
