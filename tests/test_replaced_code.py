"""rbvit's own computing code or tables replaced in memory (a notebook's experiment) is another run.

rbvit's code is keyed by each suite's version, which no one bumps for ``OPS["contrast"] = mine`` typed in a
notebook: before, such a run was stored under the shipped run id, and the next run with the shipped code
resumed its numbers (exit 0). Now whatever a notebook puts in the place of rbvit's computing code (an
``OPS`` entry, a module function, a suite's method) or a shipped table edited in place or rebound keys the
run by its content; the shipped package keys nothing extra, so shipped runs keep their ids.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.errors import ConfigError
from robustbench_vit.replaced_code import replaced_code
from robustbench_vit.suites import make_suite
from tests.helpers import CIFAR10_TEST, assert_ray_sweep_refused, needs_cifar


def test_the_shipped_package_replaces_nothing():
    """Every rbvit module and the libraries suites compute with imported in a fresh process, a model built
    and run: nothing found in rbvit's code, its decoder or the installed packages (a false find would give
    every shipped run another id)."""
    code = (
        "import importlib, pkgutil, torch, robustbench_vit as r\n"
        "for m in pkgutil.walk_packages(r.__path__, 'robustbench_vit.'):\n"
        "    importlib.import_module(m.name)\n"
        # compiled packages whose classes name modules without a file (cv2.aruco, duckdb's types) are a
        # package's code, not outside code
        "for lib in ('cv2', 'scipy.ndimage', 'skimage', 'imagecorruptions', 'sklearn.metrics', 'duckdb', 'av',\n"
        "            'foolbox', 'autoattack', 'matplotlib.pyplot', 'numba', 'ray', 'wand.image'):\n"
        "    try:\n"
        "        importlib.import_module(lib)\n"
        "    except Exception:\n"
        "        pass\n"
        "m = r.load_model('timm:test_vit', pretrained=False)\n"
        "m.module(torch.rand(1, 3, *m.data_config.image_size))\n"
        "from robustbench_vit.identity import software_identity\n"
        "from robustbench_vit.library_patches import replaced_library_code\n"
        "from robustbench_vit.replaced_code import DECODING_MODULES, replaced_code, running_software, _SHIPPED\n"
        "assert len(_SHIPPED) >= 6, _SHIPPED\n"
        "assert running_software() == software_identity()\n"
        "print(replaced_code(), replaced_code(DECODING_MODULES), replaced_library_code())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{} {} {}"


def test_each_kind_of_replacement_is_found_and_undone(monkeypatch):
    from robustbench_vit.metrics import mce
    from robustbench_vit.perturbations import corruptions
    from robustbench_vit.perturbations.corruptions import noise_blur, tables
    from robustbench_vit.suites.occlusion import Occlusion

    base = make_suite("occlusion").identity()
    assert "replaced" not in base and replaced_code() == {}

    def mine(x, c, g, t):  # type: ignore[no-untyped-def]
        return x

    with monkeypatch.context() as m:
        m.setitem(corruptions.OPS, "contrast", mine)  # an OPS entry
        m.setattr(noise_blur, "gaussian_blur", lambda x, c: x)  # a module function
        m.setattr(Occlusion, "perturb", lambda self, *a: a[0])  # a suite's method
        found = replaced_code()
        assert set(found) == {
            "robustbench_vit.perturbations.corruptions.OPS['contrast']",
            "robustbench_vit.perturbations.corruptions.noise_blur.gaussian_blur",
            "robustbench_vit.suites.occlusion.Occlusion.perturb",
        }
        assert make_suite("occlusion").identity()["replaced"] == found
    assert replaced_code() == {}

    # data tables: edited in place (both bindings hold the same dict) or rebound
    with monkeypatch.context() as m:
        m.setitem(tables.IMAGENET, "contrast", [0.5, 0.3, 0.2, 0.1, 0.05])
        assert set(replaced_code()) == {
            "robustbench_vit.perturbations.corruptions.TABLES",
            "robustbench_vit.perturbations.corruptions.tables.TABLES",
        }
    assert replaced_code() == {}
    with monkeypatch.context() as m:
        m.setattr(mce, "ALEXNET_ERRORS", {**mce.ALEXNET_ERRORS, "fog": 0.5})
        assert set(replaced_code()) == {"robustbench_vit.metrics.mce.ALEXNET_ERRORS"}
    # a package's or rbvit's own function under a name not its own is found too
    with monkeypatch.context() as m:
        m.setattr(noise_blur, "gaussian_blur", torch.nn.functional.relu)
        m.setattr(noise_blur, "defocus_blur", noise_blur.motion_blur_random)
        assert set(replaced_code()) == {
            "robustbench_vit.perturbations.corruptions.noise_blur.gaussian_blur",
            "robustbench_vit.perturbations.corruptions.noise_blur.defocus_blur",
        }
    assert replaced_code() == {}


@needs_cifar
def test_a_run_with_a_replaced_corruption_is_recomputed_and_the_shipped_one_resumed(
    tmp_path, cifar_card, monkeypatch
):
    """The probe: ``OPS["contrast"]`` replaced in a notebook, then restored. The replaced run gets its own
    id and numbers; the shipped run before and after it is one run (resumed, 0 computed)."""
    from robustbench_vit.perturbations import corruptions

    kw = dict(data=str(CIFAR10_TEST), limit=40, out=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    kw |= dict(suite_params={"corruptions": "contrast", "severities": "5"}, progress=False)
    shipped = rbvit.evaluate(str(cifar_card), "corruptions", **kw)
    with monkeypatch.context() as m:
        m.setitem(corruptions.OPS, "contrast", lambda x, c, g, t: torch.zeros_like(x) + 0.5)
        swapped = rbvit.evaluate(str(cifar_card), "corruptions", **kw)
        assert swapped.attrs["conditions_computed"] == 1
        assert set(swapped.run_id).isdisjoint(shipped.run_id)
        # every image is the same gray: one prediction for all, unlike the shipped contrast
        preds = swapped[(swapped.metric == "top1") & (swapped.condition == "contrast/5")]
        assert len(preds) == 1
    again = rbvit.evaluate(str(cifar_card), "corruptions", **kw)
    assert again.attrs["conditions_computed"] == 0
    assert set(again.run_id) == set(shipped.run_id)
    key = ["condition", "metric"]
    a = shipped.set_index(key).value.sort_index()
    assert a.equals(again.set_index(key).value.sort_index())
    b = swapped.set_index(key).value.sort_index()
    assert not a.loc[("contrast/5", "nll")] == b.loc[("contrast/5", "nll")]


def test_device_processes_refuse_code_they_would_not_see(monkeypatch):
    """``--devices`` runs each share in a fresh process, which imports the shipped code: numbers computed
    there would be stored under the replaced code's run id. Refused with one line naming what was replaced."""
    from robustbench_vit.engine.multidevice import evaluate_on_devices
    from robustbench_vit.engine.options import RunOptions
    from robustbench_vit.perturbations import corruptions

    monkeypatch.setitem(corruptions.OPS, "contrast", lambda x, c, g, t: x)
    opts = RunOptions(out="/nonexistent-never-written", devices="cpu,cpu")
    with pytest.raises(ConfigError, match=r"OPS\['contrast'\]"):
        evaluate_on_devices("test_vit", make_suite("corruptions"), opts)


def test_a_ray_sweep_refuses_code_its_workers_would_not_see(tmp_path, monkeypatch):
    """Ray's workers import the shipped code: the sweep would report the shipped numbers as the replaced
    code's. Refused before Ray is imported or any cell planned."""
    from robustbench_vit.perturbations import corruptions

    monkeypatch.setitem(corruptions.OPS, "contrast", lambda x, c, g, t: x)
    assert_ray_sweep_refused(tmp_path, "corruptions")


@needs_cifar
@pytest.mark.parametrize("where", ["wrapper", "weights", "labels", "decoder"])
def test_the_model_wrapper_or_decoder_replaced_in_memory_is_another_run(
    tmp_path, cifar_card, monkeypatch, where
):
    """The probe: rbvit's model wrapper (``PixelModel.forward``: normalisation inside the model) or its image
    decoder replaced in a notebook. Before, the wrapper was outside the scanned code and the decoder keyed
    the cache by its version only: the replaced run was stored under the shipped run id (and its pixels under
    the shipped cache key), and the shipped run resumed from it; so did a card's weights reader replaced (a card
    is keyed by its file's digest, not by what the reader made of it), and the mapping of a dataset's classes
    to the model's outputs (the identity names each image's class). Now each is another run (and cache entry),
    equal to a fresh one, and the shipped run resumes its own numbers before and after."""
    from robustbench_vit.data import cache as image_cache
    from robustbench_vit.data import labels
    from robustbench_vit.models import loading, modules

    kw = dict(data=str(CIFAR10_TEST), limit=24, progress=False)
    shared = dict(out=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), **kw)
    shipped = rbvit.evaluate(str(cifar_card), "clean", **shared)
    caches = set((tmp_path / "cache").iterdir())

    def replace(m: pytest.MonkeyPatch) -> None:
        if where == "wrapper":
            forward = modules.PixelModel.forward
            m.setattr(modules.PixelModel, "forward", lambda self, x: forward(self, x.flip(-1).flip(-2)))
        elif where == "labels":  # classes mapped to the model's outputs otherwise (the identity names them)
            index_of = labels.LabelSpace.index_of
            m.setattr(
                labels.LabelSpace, "index_of", lambda self, c: (index_of(self, c) + 1) % self.num_classes
            )
        elif where == "weights":  # a notebook's experiment: the weights halved as they are read
            read = loading.read_state_dict
            m.setattr(loading, "read_state_dict", lambda *a: {k: v * 0.5 for k, v in read(*a).items()})
        else:
            decode = image_cache.decode_rgb
            m.setattr(image_cache, "decode_rgb", lambda data, name: decode(data, name).flip(-2))

    with monkeypatch.context() as m:
        replace(m)
        replaced = rbvit.evaluate(str(cifar_card), "clean", **shared)
        fresh = rbvit.evaluate(
            str(cifar_card), "clean", out=str(tmp_path / "o2"), cache_dir=str(tmp_path / "c2"), **kw
        )
    assert replaced.attrs["conditions_computed"] == 1
    assert set(replaced.run_id).isdisjoint(shipped.run_id)
    assert (set((tmp_path / "cache").iterdir()) > caches) == (
        where == "decoder"
    )  # its pixels: a cache of their own
    key = ["condition", "metric"]
    assert replaced.set_index(key).value.equals(fresh.set_index(key).value)
    assert (
        replaced.set_index(key).value.loc[("clean", "nll")]
        != shipped.set_index(key).value.loc[("clean", "nll")]
    )
    again = rbvit.evaluate(str(cifar_card), "clean", **shared)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(shipped.run_id)
    assert again.set_index(key).value.equals(shipped.set_index(key).value)


def test_a_rebound_constant_is_found_and_a_neutral_one_is_not(monkeypatch):
    """Constants rbvit's computing code reads when it runs (the transfer attack's PGD step, the reference
    preprocessing's mean, the fixed-point precision of a corruption's resize) rebound in a notebook compute
    other numbers under the shipped version; how much is read ahead or computed at once does not."""
    import importlib

    from robustbench_vit import replaced_code as scan
    from robustbench_vit.perturbations.corruptions import _ops, noise_blur
    from robustbench_vit.suites import memory, reference_preprocessing, transfer

    noise_blur._glass_permuter()  # fills its module's cache (``global _PERMUTE``): state, not a constant
    assert replaced_code() == {}
    with monkeypatch.context() as m:
        m.setattr(transfer, "PGD_STEP", "1/255")
        m.setattr(reference_preprocessing, "REFERENCE_MEAN", (0.5, 0.5, 0.5))
        m.setattr(_ops, "PIL_PRECISION_BITS", 16)
        m.setattr(memory, "FORWARD_CHUNK", 7)  # neutral: chunks of a forward pass
        assert set(replaced_code()) == {
            "robustbench_vit.suites.transfer.PGD_STEP",
            "robustbench_vit.suites.reference_preprocessing.REFERENCE_MEAN",
            "robustbench_vit.perturbations.corruptions._ops.PIL_PRECISION_BITS",
        }
    assert replaced_code() == {}
    for module, name in scan.NEUTRAL_CONSTANTS:  # the list names constants that exist, as their source says
        path = importlib.import_module(module).__file__
        assert name in scan._shipped_constants(path), (module, name)


@needs_cifar
def test_a_run_with_a_rebound_constant_is_another_run(tmp_path, cifar_card, monkeypatch):
    """The probe: the fixed-point precision of pixelate's Pillow-exact box resize rebound in a notebook
    (``_ops.PIL_PRECISION_BITS = 10``) computed other pixels under the shipped run id (the constant is read
    when the corruption runs, and is in no parameter), and the shipped run resumed them."""
    from robustbench_vit.perturbations.corruptions import _ops

    params = {"corruptions": ["pixelate"], "severities": [5]}
    kw = dict(
        data=str(CIFAR10_TEST), limit=20, progress=False, out=str(tmp_path / "out"), suite_params=params
    )
    shipped = rbvit.evaluate(str(cifar_card), "corruptions", **kw)
    with monkeypatch.context() as m:
        m.setattr(_ops, "PIL_PRECISION_BITS", 10)
        rebound = rbvit.evaluate(str(cifar_card), "corruptions", **kw)
    assert rebound.attrs["conditions_computed"] == 1 and set(rebound.run_id).isdisjoint(shipped.run_id)
    again = rbvit.evaluate(str(cifar_card), "corruptions", **kw)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(shipped.run_id)
