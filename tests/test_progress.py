"""What a user sees while rbvit works (progress on stderr) and what lands on stdout (never cut)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from robustbench_vit.engine.progress import (
    LogProgress,
    NullProgress,
    RichProgress,
    TqdmProgress,
    make_progress,
)
from tests.helpers import CIFAR10_TEST, needs_cifar

RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_writes_a_line_per_condition_and_at_most_every_interval():
    clock, stream = FakeClock(), io.StringIO()
    p = LogProgress(stream, interval=5.0, clock=clock)
    p.start("conditions", "m | occlusion | cifar10", 2)
    p.start("images", "m | occlusion | cifar10 | random_0.5", 1000)
    for _ in range(10):  # 100 images per second for 10 s, advanced every second
        clock.t += 1.0
        p.advance("images", 100)
    lines = stream.getvalue().splitlines()
    assert "1000 images (condition 1/2)" in lines[0]
    progress = lines[1:]
    assert len(progress) == 2  # at 5 s and at the finish (10 s), nothing in between
    assert "500/1000 images, 100.0 img/s" in progress[0] and "ETA 0:05" in progress[0]
    assert "1000/1000 images" in progress[-1] and progress[-1].rstrip().endswith("done (condition 1/2)")


def test_make_progress_picks_the_display_for_where_it_runs(monkeypatch):
    assert isinstance(make_progress(False), NullProgress) and isinstance(make_progress("off"), NullProgress)
    assert isinstance(make_progress("auto", stream=io.StringIO()), LogProgress)  # not a terminal
    monkeypatch.setattr("robustbench_vit.engine.progress.in_notebook", lambda: True)
    assert isinstance(make_progress("auto"), TqdmProgress)
    mine = NullProgress()
    assert make_progress(mine) is mine


def test_rich_bars_show_count_rate_and_eta_per_level():
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    p = RichProgress(console)
    p.start("cells", "sweep ci.toml", 4)
    p.start("conditions", "m | occlusion | cifar10", 10)
    p.start("images", "m | occlusion | cifar10 | a_condition_name_that_is_long", 500)
    p.advance("images", 100)
    p.advance("images", 100)
    out = io.StringIO()
    Console(file=out, width=200).print(p.progress.make_tasks_table(p.progress.tasks))
    p.close()
    text = out.getvalue()
    assert "0/4" in text and "0/10" in text and "200/500" in text
    assert "img/s" in text and "a_condition_name_that_is_long" in text


def test_tqdm_progress_runs_three_levels():
    p = TqdmProgress()
    p.start("conditions", "c", 2)
    p.start("images", "i", 10)
    p.advance("images", 10)
    p.advance("conditions")
    assert p.bars["images"].n == 10 and p.bars["conditions"].n == 1
    p.close()


@needs_cifar
def test_eval_into_a_log_prints_progress_lines_and_quiet_prints_none(tmp_path, cifar_card):
    cmd = ["eval", "-m", str(cifar_card), "-s", "clean,occlusion", "--data", str(CIFAR10_TEST)]
    cmd += ["--limit", "20", "--out", str(tmp_path), "-p", "fractions=0.5"]
    r = subprocess.run([*RBVIT, *cmd], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "img/s" in r.stderr and "cifar_vit | occlusion | cifar10" in r.stderr
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    runner = (
        CliRunner(mix_stderr=False)
        if "mix_stderr" in CliRunner.__init__.__code__.co_varnames
        else CliRunner()
    )
    quiet = runner.invoke(main, ["-q", *cmd])  # in-process: stdout is not a terminal here either
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    # piped stdout: tab-separated, complete values, no table art and no ellipsis
    header, *rows = quiet.stdout.splitlines()
    assert header.split("\t") == ["model", "suite", "dataset", "condition", "metric", "value", "n"]
    assert "…" not in quiet.stdout and "│" not in quiet.stdout
    top1 = [float(r.split("\t")[5]) for r in rows if r.split("\t")[4] == "top1"]
    assert len(top1) >= 2 and all(0.0 <= v <= 1.0 for v in top1)


def test_piped_tables_keep_long_values_whole():
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    r = CliRunner().invoke(main, ["ls", "models"])
    assert r.exit_code == 0
    names = [line.split("\t")[0] for line in r.output.splitlines()[1:]]
    assert "efficientnet_lite0" in names and all("…" not in n for n in names)
    wide = CliRunner().invoke(main, ["ls", "suites", "occlusion", "--format", "table"])
    assert wide.exit_code == 0 and "fractions" in wide.output


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_sweep_dry_run_prints_its_plan_in_every_format(tmp_path, fmt):
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    toml = tmp_path / "s.toml"
    toml.write_text('[sweep]\nmodels = ["timm:test_vit"]\n[[suite]]\nname = "clean"\n')
    r = CliRunner().invoke(main, ["sweep", str(toml), "--dry-run", "--format", fmt])
    assert r.exit_code == 0, r.output
    assert "todo" in r.output and "test_vit | clean" in r.output
