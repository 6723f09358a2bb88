"""rbvit's own code edited in a checkout (``pip install -e``, a researcher's tweak to a perturbation) runs other
code under the same suite version: the files that differ from the shipped table key the suite's runs and
what it stores, and the decoder's cache entries; the shipped code keeps its plain version keys."""

from __future__ import annotations

import shutil

import pytest

from robustbench_vit import code_manifest, identity
from robustbench_vit.suites import SUITES, make_suite
from tests.helpers import needs_cifar
from tests.identity_world import run_suite

pytestmark = pytest.mark.usefixtures("young_files_trusted")


def _forget() -> None:
    """What a new process starts with: no file compared yet."""
    code_manifest.edited_code.cache_clear()
    identity.software_identity.cache_clear()


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    """A copy of the package the manifest compares with, to edit (tests never write inside the checkout)."""
    root = tmp_path / "checkout"
    shutil.copytree(
        code_manifest.PACKAGE_ROOT / "robustbench_vit",
        root / "robustbench_vit",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.setattr(code_manifest, "PACKAGE_ROOT", root)
    _forget()
    yield root / "robustbench_vit"
    _forget()


def test_the_shipped_code_is_keyed_by_its_versions_alone():
    _forget()
    for name, cls in SUITES.items():
        if cls.__module__.startswith("robustbench_vit."):
            assert code_manifest.edited_code(f"suite/{name}") == "", name
    assert make_suite("occlusion").code_key() == SUITES.get("occlusion").version
    assert identity.software_identity()["rbvit-decode"] == str(identity.DECODE_VERSION)


def test_an_edited_perturbation_keys_the_suites_that_compute_with_it(checkout):
    plain = make_suite("occlusion").identity()
    with open(checkout / "perturbations" / "occlusion.py", "a") as f:
        f.write("\nDROP_SCALE = 0.5  # a researcher's tweak\n")
    _forget()
    edited = code_manifest.edited_code("suite/occlusion")
    assert edited.startswith("edited:")
    assert make_suite("occlusion").code_key() == {
        "version": SUITES.get("occlusion").version,
        "edited": edited,
    }
    assert make_suite("occlusion").identity() == {**plain, "edited": edited}
    assert code_manifest.edited_code("suite/clean") == ""  # clean does not compute with it
    (checkout / "perturbations" / "occlusion.py").unlink()
    _forget()
    assert code_manifest.edited_code("suite/occlusion") not in ("", edited)  # a file gone is an edit too


def test_an_edited_corruption_keys_the_corruptions_suite(checkout):
    """The corruptions compute in their package's __init__ (OPS) and its modules: all of them are covered."""
    with open(checkout / "perturbations" / "corruptions" / "weather.py", "a") as f:
        f.write("\nFROST_BLEND = 0.9\n")
    _forget()
    assert code_manifest.edited_code("suite/corruptions").startswith("edited:")
    assert code_manifest.edited_code("suite/imagenet_c") == ""  # ImageNet-C's files: no corruption code


def test_the_model_wrapper_edited_keys_every_suite(checkout):
    """The normalisation inside the model computes every number, whatever the suite."""
    with open(checkout / "models" / "modules.py", "a") as f:
        f.write("\nEPS = 1e-6  # added to std\n")
    _forget()
    assert all(
        code_manifest.edited_code(f"suite/{s}").startswith("edited:") for s in ("clean", "pgd", "occlusion")
    )


def test_the_200_class_masks_edited_key_imagenet_a_and_r(checkout):
    """``data/registry.py`` says which 200 classes ImageNet-A/-R hold and which outputs they are scored on
    (``subset_synsets``): an edit there was no edit of any suite's code, so its numbers resumed the shipped
    mask's rows."""
    with open(checkout / "data" / "registry.py", "a") as f:
        f.write("\nMASK_FILES = ('imagenet_r_synsets.txt',)  # another class list\n")
    _forget()
    assert all(
        code_manifest.edited_code(f"suite/{s}").startswith("edited:") for s in ("imagenet_a", "imagenet_r")
    )


def test_an_edited_decoder_is_another_decode_key(checkout):
    with open(checkout / "data" / "decode.py", "a") as f:
        f.write("\n# resize with another filter\n")
    _forget()
    assert identity.software_identity()["rbvit-decode"].startswith(f"{identity.DECODE_VERSION} edited:")


@needs_cifar
def test_a_run_of_edited_code_is_recomputed_and_the_shipped_run_resumes(
    identity_world, checkout, monkeypatch
):
    """Before the manifest, the edited checkout's run resumed the shipped code's rows (same version)."""
    from tests.identity_world import Counter

    counter = Counter(monkeypatch)
    params = {"fractions": (0.0, 0.5)}
    card = identity_world["card"]
    shipped = run_suite(identity_world, card, "occlusion", params, "run")
    computed = counter.conditions
    original = (checkout / "perturbations" / "occlusion.py").read_text()
    (checkout / "perturbations" / "occlusion.py").write_text(original + "\n# tweaked\n")
    _forget()
    run_suite(identity_world, card, "occlusion", params, "run")
    assert counter.conditions == 2 * computed  # computed again, never resumed as the shipped code
    (checkout / "perturbations" / "occlusion.py").write_text(original)
    _forget()
    assert run_suite(identity_world, card, "occlusion", params, "run") == shipped
    assert counter.conditions == 2 * computed  # the shipped code's rows resume
