"""README stays true: its command synopsis names only options the CLI has, and the sweep example of
docs/scaling-out.md loads."""

from __future__ import annotations

import re

from robustbench_vit.cli.commands import main
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def _synopsis() -> str:
    section = README.split("## Command line", 1)[1]
    return section.split("```", 2)[1]


def test_every_option_in_the_synopsis_exists():
    group_opts = {o for p in main.params for o in p.opts}
    for line in re.split(r"\n(?=rbvit )", _synopsis().strip()):
        words = line.split()
        name = next((w for w in words[1:] if w in main.commands), None)
        own = {o for p in main.commands[name].params for o in p.opts} if name else set()
        for opt in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line):
            assert opt in own | group_opts | {"-h", "--help", "-vv"}, (
                f"README synopsis: {opt} is not an option ({line[:60]})"
            )


def test_the_per_model_override_example_loads(tmp_path):
    from robustbench_vit.sweeps.run import load_sweep

    scaling = (ROOT / "docs" / "scaling-out.md").read_text()
    block = (
        scaling.split("A model table overrides per model:", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    )
    toml = tmp_path / "s.toml"
    toml.write_text(f'[sweep]\n{block}\n[[suite]]\nname = "occlusion"\n')
    cells = {c.model: c.options for c in load_sweep(toml).cells}
    assert cells["deit_base_patch16_384"].batch_size == 32
    assert cells["deit_base_patch16_384"].suite_params["grid"] == "24"
