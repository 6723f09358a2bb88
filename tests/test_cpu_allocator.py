"""The ``rbvit`` command keeps large CPU buffers mapped between batches (glibc's mmap and trim thresholds),
in its own process and the ones it starts; a user's own malloc settings, ``RBVIT_MALLOC=default`` and
non-glibc systems are left alone. Checked by what the setting is for: a forward pass's large outputs,
freed and allocated again each batch, page-fault once, not every batch (the speed is measured in ``benchmarks/bench_allocator.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from robustbench_vit.cpu_allocator import THRESHOLD_BYTES, _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc settings only")

#: four forward passes of two convolutions with 100 MB outputs: the page faults they cost after a first pass
_FAULTS = """
import json, os, resource, sys, torch
from robustbench_vit.cpu_allocator import keep_cpu_buffers
changed = keep_cpu_buffers() if sys.argv[1] == "1" else False
nn = torch.nn
net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()).eval()
x = torch.rand(16, 3, 224, 224)
with torch.no_grad():
    net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        net(x)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
print(json.dumps({"changed": changed, "faults": faults, "env": env}))
"""


def _run(code: str, *args: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RBVIT_MALLOC"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env={**clean, **env}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_buffers_are_kept_between_allocations_and_children_inherit_the_setting():
    default, kept = _run(_FAULTS, "0"), _run(_FAULTS, "1")
    assert not default["changed"] and default["env"] == {}
    assert kept["changed"]
    assert kept["env"] == {
        "MALLOC_TRIM_THRESHOLD_": str(THRESHOLD_BYTES),
        "MALLOC_MMAP_THRESHOLD_": str(THRESHOLD_BYTES),
    }
    # each pass maps its 100 MB outputs afresh by default (about 700,000 faults); kept, the heap holds them
    assert default["faults"] > 300_000 and kept["faults"] < default["faults"] / 4, (default, kept)
    # a process started with the variables (a --devices share, a Ray worker) gets it from glibc at start
    inherited = _run(_FAULTS, "0", **kept["env"])
    assert inherited["faults"] < default["faults"] / 4, inherited


@pytest.mark.parametrize(
    "env", [{"RBVIT_MALLOC": "default"}, {"MALLOC_TOP_PAD_": "0"}, {"MALLOC_MMAP_THRESHOLD_": "131072"}]
)
def test_the_users_choice_is_left_alone(env):
    got = _run(_FAULTS, "1", **env)
    assert not got["changed"]
    assert got["env"] == {k: v for k, v in env.items() if k.startswith("MALLOC_")}


def test_the_rbvit_command_sets_it_and_a_library_import_does_not():
    code = (
        "import json, os, sys\n"
        "import robustbench_vit, robustbench_vit.api\n"
        "before = os.environ.get('MALLOC_MMAP_THRESHOLD_')\n"
        "from robustbench_vit.cli.commands import main\n"
        "try:\n    main(['ls', 'suites'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({'changed': before, 'env': os.environ.get('MALLOC_MMAP_THRESHOLD_')}))\n"
    )
    got = _run(code)
    assert got == {"changed": None, "env": str(THRESHOLD_BYTES)}
