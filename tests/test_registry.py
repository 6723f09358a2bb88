import subprocess
import sys

import pytest

from robustbench_vit.errors import UnknownNameError
from robustbench_vit.registry import Registry


def test_duplicate_names_raise():
    r: Registry[int] = Registry("thing")
    r.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.add("a", 2)


def test_unknown_name_suggests_and_lists():
    r: Registry[int] = Registry("model")
    for n in ("vit_b16", "vit_s16", "resnet50"):
        r.add(n, 1)
    with pytest.raises(UnknownNameError) as e:
        r.get("vit_b61")
    msg = str(e.value)
    assert "Did you mean" in msg and "'vit_b16'" in msg and "resnet50" in msg


def test_decorator_registration():
    r: Registry[type] = Registry("suite")

    @r.register("x")
    class X:
        pass

    assert r.get("x") is X and "x" in r and r.names() == ["x"]


def test_import_and_listing_are_light():
    """Importing the package and listing the zoo imports neither torch nor timm (no model, no network)."""
    code = (
        "import sys, robustbench_vit; from robustbench_vit.models.zoo import MODELS; MODELS.names(); "
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_is_importable():
    """``from robustbench_vit import *`` and attribute access work for every name in ``__all__``."""
    import robustbench_vit as rbvit

    for name in rbvit.__all__:
        assert getattr(rbvit, name) is not None, name
    assert callable(rbvit.build_leaderboard) and callable(rbvit.evaluate)
    ns: dict = {}
    exec("from robustbench_vit import *", ns)
    assert set(rbvit.__all__) <= set(ns)


def test_ls_suites_name_shows_parameters_types_defaults_and_choices():
    import json
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "robustbench_vit.cli.commands", "ls", "suites", "transfer", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    params = {p["name"]: p for p in info["parameters"]}
    assert (
        params["attack"]["choices"] == ["fgsm", "pgd", "mifgsm", "dim"]
        and params["attack"]["default"] == "pgd"
    )
    assert params["population"]["default"] == "auto" and params["ti_kernel"]["type"] == "int"
    assert params["preset"]["choices"] == ["none", "atvit"]
    assert "Naseer" in info["paper"]
    bad = subprocess.run(
        [sys.executable, "-m", "robustbench_vit.cli.commands", "ls", "suites", "occlusoin"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 3 and "occlusion" in bad.stderr
