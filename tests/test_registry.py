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
