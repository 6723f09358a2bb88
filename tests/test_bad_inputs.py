"""Every bad input is one line on stderr with its documented exit code, never a traceback, and never
changes a result file (issue 17's probes, table-driven, through the CLI)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from robustbench_vit.engine.runner import evaluate
from robustbench_vit.errors import ConfigError
from tests.helpers import CIFAR10_TEST, error_lines, needs_cifar, rbvit_cli

run = rbvit_cli


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """The same CLI entry point, invoked in this process (click's runner): the probes then cost
    milliseconds instead of a Python start and a torch import each."""
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    res = CliRunner().invoke(main, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # an uncaught exception is a traceback for a user: fail loudly
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory, cifar_card):
    """A results folder holding one finished run, and the files the probes need."""
    root = tmp_path_factory.mktemp("bad")
    out = root / "results"
    r = run(
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "clean",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "10",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    card = json.loads(Path(cifar_card).read_text())
    weights = str(Path(cifar_card).parent / card["weights"])

    def write_card(name: str, **changes: object) -> str:
        path = root / f"{name}.json"
        path.write_text(json.dumps({**card, "weights": weights, **changes}))
        return str(path)

    toml_base = f'[sweep]\nout = "{out}"\ndata = "{CIFAR10_TEST}"\nlimit = 10\nmodels = ["{cifar_card}"]\n'

    def write_toml(name: str, top: str = "", suite: str = 'name = "clean"', models: str | None = None) -> str:
        text = (
            toml_base
            if models is None
            else toml_base.replace(f'models = ["{cifar_card}"]', f"models = {models}")
        )
        path = root / f"{name}.toml"
        path.write_text(text + top + "\n[[suite]]\n" + suite + "\n")
        return str(path)

    (root / "a_file").write_text("not a folder")
    return {
        "root": root,
        "out": out,
        "card": str(cifar_card),
        "write_card": write_card,
        "write_toml": write_toml,
    }


def _eval(
    w,
    *extra: str,
    model: str | None = None,
    data: object = None,
    limit: str | None = "10",
    out: object = None,
) -> list[str]:
    """``rbvit eval`` of the card on 10 CIFAR images into the probe's results folder, plus ``extra``."""
    argv = [
        "eval",
        "-m",
        model or w["card"],
        "--data",
        str(data or CIFAR10_TEST),
        "--out",
        str(out or w["out"]),
    ]
    return argv + (["--limit", limit] if limit is not None else []) + list(extra)


def _card(w, name: str, **changes: object) -> list[str]:
    return _eval(w, "-s", "clean", model=w["write_card"](name, **changes))


def _sweep(w, name: str, *extra: str, **toml: str) -> list[str]:
    return ["sweep", *extra, w["write_toml"](name, **toml)]


#: (id, argv builder, exit code, text the one line must contain)
PROBES = [
    ("grid=0", lambda w: _eval(w, "-s", "occlusion", "-p", "grid=0"), 2, "grid"),
    ("duplicate fractions", lambda w: _eval(w, "-s", "occlusion", "-p", "fractions=0.5,0.5"), 2, "fractions"),
    ("offset=ture", lambda w: _eval(w, "-s", "occlusion", "-p", "offset=ture"), 2, "offset"),
    ("batch size 0", lambda w: _eval(w, "-s", "clean", "--batch-size", "0"), 2, "--batch-size"),
    ("batch size -1", lambda w: _eval(w, "-s", "clean", "--batch-size", "-1"), 2, "--batch-size"),
    ("limit 0", lambda w: _eval(w, "-s", "clean", limit="0"), 2, "--limit"),
    ("seed -1", lambda w: _eval(w, "-s", "clean", "--seed", "-1"), 2, "--seed"),
    ("device tpu", lambda w: _eval(w, "-s", "clean", "--device", "tpu"), 2, "tpu"),
    ("card input_size [3,32]", lambda w: _card(w, "c1", input_size=[3, 32]), 5, "input_size"),
    ("card negative size", lambda w: _card(w, "c2", input_size=[3, -32, 32]), 5, "input_size"),
    ("card std=0", lambda w: _card(w, "c3", std=[0, 0.2, 0.2]), 5, "std"),
    ("card crop_ptc (misspelt)", lambda w: _card(w, "c3c", crop_ptc=1.0), 5, "did you mean 'crop_pct'"),
    (
        "img-size the ViT was not built for",
        lambda w: _eval(w, "-s", "clean", "--img-size", "64"),
        2,
        "64x64 inputs",
    ),
    (  # 0.1234567 and 0.1234568 are both r=0.123457: was "internal error: RuntimeError"
        "fourier radii closer than their names",
        lambda w: _eval(w, "-s", "fourier_filter", "-p", "radius_fractions=0.1234567,0.1234568"),
        2,
        "two conditions share the name high/r=0.123457",
    ),
    (  # resizing the 32 px crop's short side to 32 million px failed in the allocator, deep in a resize
        "crop-pct 1e-6",
        lambda w: _eval(w, "-s", "clean", "--crop-pct", "1e-6"),
        2,
        "above the 89,478,485 pixel limit",
    ),
    ("card crop_pct 1e-6", lambda w: _card(w, "c3d", crop_pct=1e-6), 2, "--crop-pct"),
    (
        "card mean on the 0-255 scale",
        lambda w: _card(w, "c3b", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
        5,
        "divide values given for 0-255 pixels by 255",
    ),
    ("toml batch_size abc", lambda w: _sweep(w, "t1", top='batch_size = "abc"'), 2, "batch_size"),
    ("toml seeds=5", lambda w: _sweep(w, "t2", top="seeds = 5"), 2, "seeds"),
    ("toml params=x", lambda w: _sweep(w, "t3", suite='name = "clean"\nparams = "x"'), 2, "params"),
    ("toml typo limt", lambda w: _sweep(w, "t4", top="limt = 10"), 2, "did you mean 'limit'"),
    ("toml models string", lambda w: _sweep(w, "t5", models='"cvit"'), 2, "models"),
    (
        "toml model listed twice",
        lambda w: _sweep(w, "t5b", models=f'["{w["card"]}", "{w["card"]}"]'),
        2,
        "is listed twice",
    ),
    ("toml seed listed twice", lambda w: _sweep(w, "t5c", top="seeds = [1, 1]"), 2, "is listed twice"),
    (
        "toml suite listed twice",
        lambda w: _sweep(w, "t5d", suite='name = "clean"\n[[suite]]\nname = "clean"'),
        2,
        "is listed twice",
    ),
    (
        "toml unknown suite",
        lambda w: _sweep(w, "t6", "--dry-run", suite='name = "occlusoin"'),
        3,
        "occlusion",
    ),
    (
        "toml unknown param",
        lambda w: _sweep(w, "t7", "--dry-run", suite='name = "occlusion"\nparams = { fractionz = [0.1] }'),
        2,
        "fractionz",
    ),
    ("leaderboard misspelt folder", lambda w: ["leaderboard", str(w["root"] / "resutls")], 4, "resutls"),
    # /proc takes no new folders, even for root (chmod cannot make a folder read-only for root)
    (
        "out not writable",
        lambda w: _eval(w, "-s", "clean", out="/proc/rbvit-results"),
        8,
        "cannot write results",
    ),
    ("out is a file", lambda w: _eval(w, "-s", "clean", out=w["root"] / "a_file"), 8, "a_file"),
    ("timm typo", lambda w: _eval(w, "-s", "clean", model="timm:vit_tinyy"), 3, "did you mean"),
    ("pgd eps=5", lambda w: _eval(w, "-s", "pgd", "-p", "epsilons=5"), 2, "[0, 1]"),
    ("unknown suite", lambda w: _eval(w, "-s", "occlusoin"), 3, "occlusion"),
    (
        "missing data folder",
        lambda w: _eval(w, "-s", "clean", data=w["root"] / "nope", limit=None),
        4,
        "nope",
    ),
    # issue 24: numbers no run can use, refused where they are parsed
    ("pgd eps=nan", lambda w: _eval(w, "-s", "pgd", "-p", "epsilons=nan"), 2, "nan"),
    (
        "param given twice",
        lambda w: _eval(w, "-s", "pgd", "-p", "steps=1", "-p", "steps=5"),
        2,
        "given twice",
    ),
    ("pgd eps listed twice", lambda w: _eval(w, "-s", "pgd", "-p", "epsilons=4/255,4/255"), 2, "twice"),
    (
        "out in the data folder",
        lambda w: _eval(w, "-s", "clean", out=CIFAR10_TEST / "rbvit-results"),
        2,
        "is in the dataset folder",
    ),
    (
        "cache in a class folder",
        lambda w: _eval(w, "-s", "clean", "--cache-dir", str(CIFAR10_TEST / "cat" / "cache")),
        2,
        "--cache-dir",
    ),
    ("pgd rel_step=-1", lambda w: _eval(w, "-s", "pgd", "-p", "rel_step=-1"), 2, "rel_step"),
    ("fractions=nan", lambda w: _eval(w, "-s", "occlusion", "-p", "fractions=nan"), 2, "fractions='nan'"),
    (
        "transfer eps=inf",
        lambda w: _eval(w, "-s", "transfer", "-p", "source=timm:test_vit", "-p", "eps=inf"),
        2,
        "inf",
    ),
    ("card std Infinity", lambda w: _card_text(w, "c4", '"std": Infinity'), 5, "Infinity"),
    (
        "card arch twice",
        lambda w: _card_text(w, "c4b", '"arch": "test_vit", "arch": "test_resnet"'),
        5,
        "twice",
    ),
    ("card weights null", lambda w: _card(w, "c5", weights=None), 5, "c5.json"),
    ("card num_classes text", lambda w: _card(w, "c6", num_classes="ten"), 5, "num_classes"),
    ("card is a FIFO", lambda w: _eval(w, "-s", "clean", model=_fifo(w)), 5, "not a regular file"),
    (
        "card links to /dev/zero",
        lambda w: _eval(w, "-s", "clean", model=_zero_link(w)),
        5,
        "not a regular file",
    ),
    (
        "labels file for imagenet_c",
        lambda w: _eval(w, "-s", "imagenet_c", "--labels", str(w["root"] / "a_file")),
        2,
        "--labels has no meaning for suite imagenet_c",
    ),
    (
        "labels file for imagenet_r on a class-folder layout",
        lambda w: _eval(w, "-s", "imagenet_r", "--labels", str(w["root"] / "a_file")),
        4,
        "no images in",
    ),
    ("seed overflow", lambda w: _eval(w, "-s", "clean", "--seed", str(2**70)), 2, "--seed"),
    ("limit overflow", lambda w: _eval(w, "-s", "clean", limit=str(2**70)), 2, "--limit"),
    ("empty subset", lambda w: _eval(w, "-s", "clean", "--subset", _empty_subset(w)), 4, "names no items"),
    (
        "cache dir not writable",
        lambda w: _eval(w, "-s", "clean", "--cache-dir", str(w["root"] / "a_file" / "c")),
        8,
        "image cache",
    ),
    ("unknown option", lambda w: _eval(w, "-s", "clean", "--bogus"), 2, "--bogus"),
    ("missing --suite", lambda w: _eval(w), 2, "--suite"),
    (
        "toml entry point",
        lambda w: _sweep(w, "t8", "--dry-run", models='["tempfile:mkdtemp"]'),
        2,
        "--allow-entrypoints",
    ),
    (
        "toml entry point os:system",
        lambda w: _sweep(w, "t9", "--dry-run", models='["os:system"]'),
        2,
        "names code to run",
    ),
    (
        "toml transfer source entry point",
        lambda w: _sweep(
            w, "t9b", "--dry-run", suite='name = "transfer"\nparams = { source = "antigravity:x" }'
        ),
        2,
        "source='antigravity:x' names code to run",
    ),
    (
        "toml message keeps [sweep]",
        lambda w: _sweep(w, "t10", top="limt = 10"),
        2,
        "[sweep] has no key 'limt'",
    ),
    ("leaderboard empty folder", lambda w: ["leaderboard", str(_empty_dir(w))], 4, "no rbvit results"),
    (
        "report empty folder",
        lambda w: ["report", str(_empty_dir(w)), "--html", str(w["root"] / "r.html")],
        4,
        "no rbvit results",
    ),
]


def _card_text(w, name: str, replace: str) -> list[str]:
    """A card whose JSON text holds ``replace`` in place of its std (non-standard JSON constants)."""
    path = Path(w["write_card"](name))
    text = json.dumps(json.loads(path.read_text()))
    path.write_text(text.replace('"std": [0.247, 0.2435, 0.2616]', replace))
    assert replace in path.read_text()
    return _eval(w, "-s", "clean", model=str(path))


def _fifo(w) -> str:
    path = w["root"] / "fifo.json"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def _zero_link(w) -> str:
    path = w["root"] / "zero.json"
    if not path.exists():
        path.symlink_to("/dev/zero")
    return str(path)


def _empty_subset(w) -> str:
    path = w["root"] / "empty-subset.txt"
    path.write_text("# nothing\n")
    return str(path)


def _empty_dir(w) -> Path:
    path = w["root"] / "empty-results"
    path.mkdir(exist_ok=True)
    return path


@needs_cifar
@pytest.mark.parametrize("name,argv,code,text", PROBES, ids=[p[0] for p in PROBES])
def test_bad_input_is_one_line(world, name, argv, code, text):
    before = snapshot(world["out"])
    r = run_in_process(*argv(world))
    lines = error_lines(r.stderr)
    assert r.returncode == code, (name, r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr[-2000:]
    assert text in lines[0], lines[0]
    assert snapshot(world["out"]) == before, "a result file changed"
    assert not (world["root"] / "resutls").exists()
    assert (
        not (world["root"] / "r.html").exists()
        and not (world["root"] / "empty-results" / "leaderboard.parquet").exists()
    )
    assert not (Path(tempfile.gettempdir()) / "rbvit-probe-marker").exists()


#: the Python API: wrong argument types and values are the project's own errors, never AttributeError
API_PROBES = [
    ("model is a number", lambda w: evaluate(123, "clean"), ConfigError),
    ("suite is a number", lambda w: evaluate(w["card"], 7), ConfigError),
    ("options not RunOptions", lambda w: evaluate(w["card"], "clean", options={"limit": 1}), ConfigError),
    ("unknown keyword", lambda w: evaluate(w["card"], "clean", limt=3), ConfigError),
    ("data is a number", lambda w: evaluate(w["card"], "clean", data=5), ConfigError),
    ("suite_params a list", lambda w: evaluate(w["card"], "clean", suite_params=[1]), ConfigError),
    ("seed overflow", lambda w: evaluate(w["card"], "clean", seed=2**70), ConfigError),
    (
        "1000 logits on CIFAR-10",
        lambda w: evaluate(
            _timm_module(1000),
            "clean",
            data=str(CIFAR10_TEST),
            limit=10,
            preprocessing={**_CIFAR_PRE, "label_space": "cifar10"},
        ),
        ConfigError,
    ),
    (
        "7 logits on CIFAR-10",
        lambda w: evaluate(
            _timm_module(7),
            "clean",
            data=str(CIFAR10_TEST),
            limit=10,
            preprocessing={**_CIFAR_PRE, "label_space": "cifar10"},
        ),
        ConfigError,
    ),
    (
        "Suite built in Python with nan",
        lambda w: evaluate(w["card"], _nan_pgd(), data=str(CIFAR10_TEST)),
        ConfigError,
    ),
]

_CIFAR_PRE = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0}


def _timm_module(classes: int):
    import timm

    return timm.create_model("test_resnet", pretrained=False, num_classes=classes)


def _nan_pgd():
    from robustbench_vit.suites.pgd import PGDSuite

    return PGDSuite(rel_step=float("nan"))


@needs_cifar
@pytest.mark.parametrize("name,call,error", API_PROBES, ids=[p[0] for p in API_PROBES])
def test_api_bad_input_raises_the_projects_errors(world, name, call, error, tmp_path):
    before = snapshot(world["out"])
    with pytest.raises(error):
        call(world)
    assert snapshot(world["out"]) == before
