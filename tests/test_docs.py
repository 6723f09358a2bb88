"""docs/ stays true: every registered suite has its page, the page's parameter table is what
``rbvit ls suites NAME --json`` says, every parameter the page names exists, and README is a short door
whose links all resolve."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from robustbench_vit.cli.commands import main
from robustbench_vit.suites import SUITES
from robustbench_vit.suites.describe import PARAMS_BEGIN, PARAMS_END, parameters_markdown
from tests.helpers import ROOT, needs_cifar
from tests.identity_world import overwrite_weights

DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def _ls_json(name: str) -> dict:
    res = CliRunner().invoke(main, ["ls", "suites", name, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


#: rbvit's own suites (a test may register an example suite of its own: test_extending)
BUILTIN = sorted(n for n, cls in SUITES.items() if cls.__module__.startswith("robustbench_vit."))


@pytest.mark.parametrize("name", BUILTIN)
def test_every_suite_has_a_page_whose_parameters_match_the_cli(name):
    page = DOCS / "suites" / f"{name}.md"
    assert page.is_file(), f"docs/suites/{name}.md is missing"
    text = page.read_text()
    assert PARAMS_BEGIN in text and PARAMS_END in text, f"{page}: no generated parameter block"
    block = text.split(PARAMS_BEGIN, 1)[1].split(PARAMS_END, 1)[0].strip()
    info = _ls_json(name)
    assert block == parameters_markdown(info), (
        f"{page}: parameters out of date; run python -m robustbench_vit.suites.describe docs/suites"
    )
    # every parameter the prose sets (`name=value`, -p name=value) is one of this suite's
    params = {p["name"] for p in info["parameters"]}
    prose = text.split(PARAMS_BEGIN, 1)[0]
    named = set(re.findall(r"(?:`|-p )([a-z_][a-z0-9_]*)=", prose))
    assert named <= params, f"{page} names parameters {sorted(named - params)} that {name} does not have"
    cited = info["paper"].split(",")[0].split(" (")[0]
    assert cited in text or name == "clean", f"{page} does not cite {info['paper']}"


def test_pages_without_a_suite_are_not_left_behind():
    pages = {p.stem for p in (DOCS / "suites").glob("*.md")} - {"index"}
    assert pages == set(BUILTIN)


def test_readme_is_a_short_door_with_working_links():
    assert len(README.splitlines()) < 250
    for name in BUILTIN:
        assert f"docs/suites/{name}.md" in README, f"README does not link the {name} page"
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links a missing {target}"


def _python_block_after(page: str, heading: str) -> str:
    """The first ```python block after the line ``heading`` in ``page``."""
    text = (DOCS / page).read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)  # type: ignore[union-attr]


@needs_cifar
@pytest.mark.usefixtures("young_files_trusted")
def test_the_documented_pandas_reading_never_averages_a_stale_run(identity_world, monkeypatch):
    """docs/python.md's "Reading a results folder" block, run as written on a folder holding the runs of
    weights since overwritten and a --limit run beside the full one: one table row per network, each with
    that network's own full-run values (a pivot of every stored row by model averages them)."""
    from robustbench_vit.api import evaluate

    root = identity_world["root"]
    out = root / "results"

    def occlusion(**kw):  # type: ignore[no-untyped-def]
        df = evaluate(
            str(identity_world["card"]),
            "occlusion",
            suite_params={"fractions": [0.0, 0.5]},
            data=str(identity_world["data"]),
            out=str(out),
            cache_dir=str(root / "cache"),
            progress=False,
            **kw,
        )
        top1 = df.query("metric == 'top1'")
        return dict(zip(top1.condition.str.extract(r"fraction=([\d.]+)")[0].astype(float), top1.value))

    old = occlusion()
    overwrite_weights(identity_world)
    limited = occlusion(limit=10)
    new = occlusion()
    assert old != new and limited != new  # else a mean could pass for either

    namespace: dict = {}
    monkeypatch.chdir(root)
    exec(_python_block_after("python.md", "Reading a results folder"), namespace)  # noqa: S102
    table = namespace["table"]
    assert len(table) == 2 == namespace["board"].label.nunique()
    by_values = sorted(table.to_dict("index").values(), key=lambda v: v != old)
    assert by_values == [old, new]
