"""rbvit's own computing code replaced in memory by code from outside it (a notebook's experiment).

rbvit's code is keyed by each suite's ``version`` (``tests/test_code_versions.py`` asks for a bump when the
code changes), which says nothing of a function a notebook sets in its place: ``OPS["fog"] = my_fog``,
``noise_blur.gaussian_noise = mine``, ``Occlusion.perturb = mine``, ``PixelModel.forward = mine`` (the
normalisation inside every model), ``loading.read_state_dict = mine``, a decoder function (:func:`running_software`: it keys the decoded-image
cache too). Computed under the shipped run id, such
numbers would later be resumed as the shipped code's. :func:`replaced_code` finds every function or class
defined outside rbvit (neither rbvit's nor an installed package's) that sits where rbvit's computing modules
look code up (module members, the values of their dicts, lists and tuples, the attributes of their classes),
any named function or class under a member name not its own (``gaussian_blur = torch.relu``), and every data
table registered with :func:`ship` (the corruption tables) whose content differs from what
was shipped (edited in place or rebound). They key the run (:meth:`robustbench_vit.suites.base.Suite.identity`)
only when something was replaced, so shipped runs keep their ids. Not found: an installed package's function
under its own name, or one of rbvit's lambdas moved to another ``OPS`` key.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any, TypeVar

from robustbench_vit.errors import ConfigError
from robustbench_vit.fingerprint import is_library, outside_code
from robustbench_vit.identity import canonical_json, digest

__all__ = [
    "replaced_code",
    "running_software",
    "refuse_replaced_code",
    "ship",
    "COMPUTING_PACKAGES",
    "DECODING_MODULES",
]

T = TypeVar("T")

#: ``(module, attribute) -> canonical text`` of the data tables as shipped (:func:`ship`)
_SHIPPED: dict[tuple[str, str], str] = {}

#: the packages whose code computes a suite's numbers (what ``tests/test_code_versions.py`` digests)
COMPUTING_PACKAGES = (
    "robustbench_vit.perturbations",
    "robustbench_vit.attacks",
    "robustbench_vit.metrics",
    "robustbench_vit.suites",
    # every suite's numbers pass through them: how a model is built and loaded (a card's weights, a checkpoint
    # key's remapping), the model wrapper (normalisation inside the model, autocast), attention and probes,
    # the loader's uint8 -> [0, 1] scaling, and how a dataset's classes map to a model's outputs (the
    # identity names each image's class by name, not by the index the mapping gives it)
    "robustbench_vit.models",
    "robustbench_vit.data.loader",
    "robustbench_vit.data.labels",
    "robustbench_vit.data.datasets",
    # which classes a benchmark's folder holds and which of a model's outputs it is scored on (the 200-class
    # masks of ImageNet-A/-R)
    "robustbench_vit.data.registry",
)

#: rbvit's decoding and resizing (what ``DECODE_VERSION`` names) and the cache that calls it: replaced in
#: memory, it keys the decoded-image cache and every run (:func:`running_software`)
DECODING_MODULES = (
    "robustbench_vit.data.decode",
    "robustbench_vit.data.preprocessing",
    "robustbench_vit.data.cache",
)


def ship(module_name: str, attribute: str, value: T) -> T:
    """Remember the content of a module's data table as shipped (called where it is defined, at import), so
    a notebook that edits it in place or rebinds it computes under another run id; returns ``value``."""
    _SHIPPED[(module_name, attribute)] = canonical_json(value)
    return value


def _within(module_name: str, packages: tuple[str, ...]) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in packages)


def _foreign(obj: Any) -> bool:
    """A function or class whose code is neither rbvit's nor an installed package's (a notebook's)."""
    if isinstance(obj, functools.partial):
        return _foreign(obj.func)
    if not isinstance(obj, (types.FunctionType, type)):
        return False
    module = str(getattr(obj, "__module__", None) or "")
    return module.split(".")[0] != "robustbench_vit" and not is_library(module)


def _code_digest(obj: Any) -> str:
    """A notebook's code by its content; rbvit's or a package's by where it lives (their versions key it)."""
    code = obj.func if isinstance(obj, functools.partial) else obj
    return outside_code(code) or digest(
        [getattr(code, "__module__", None), getattr(code, "__qualname__", None)]
    )


def _renamed(name: str, obj: Any) -> bool:
    """A named function or class under another name (``noise_blur.gaussian_blur = torch.relu``)."""
    own = getattr(obj, "__name__", None)
    return isinstance(obj, (types.FunctionType, type)) and own != name and own != "<lambda>"


def _replaced(name: str, obj: Any) -> bool:
    """Code found under ``name`` that is not rbvit's own code of that name."""
    return _foreign(obj) or _renamed(name, obj)


def _scan(
    where: str, name: str, value: Any, found: dict[str, str], *, nested: bool, packages: tuple[str, ...]
) -> None:
    if _foreign(value) if nested else _replaced(name, value):
        found[where] = _code_digest(value)
        return
    if nested:
        return
    if isinstance(value, type) and _within(value.__module__, packages):
        for attr, item in sorted(vars(value).items()):
            for part in (item, getattr(item, "__func__", None), getattr(item, "fget", None)):
                if part is not None and _replaced(attr, part):
                    found[f"{where}.{attr}"] = _code_digest(part)
                    break
    elif isinstance(value, dict):
        for key, item in value.items():
            _scan(f"{where}[{key!r}]", str(key), item, found, nested=True, packages=packages)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _scan(f"{where}[{i}]", str(i), item, found, nested=True, packages=packages)


def replaced_code(packages: tuple[str, ...] = COMPUTING_PACKAGES) -> dict[str, str]:
    """``where -> digest of the code found there`` for every outside function or class in the place of
    rbvit's computing code (imported modules of ``packages``, by default :data:`COMPUTING_PACKAGES`; the
    shipped tables always); empty as shipped."""
    found: dict[str, str] = {}
    for name in sorted(m for m in list(sys.modules) if _within(m, packages)):
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, value in sorted(vars(module).items()):
            if not attr.startswith("__"):
                _scan(f"{name}.{attr}", attr, value, found, nested=False, packages=packages)
    for (name, attr), text in sorted(_SHIPPED.items()):
        module = sys.modules.get(name)
        if module is not None and canonical_json(now := getattr(module, attr, None)) != text:
            found[f"{name}.{attr}"] = digest(now)
    return found


def running_software() -> dict[str, str]:
    """:func:`~robustbench_vit.identity.software_identity` (the libraries that decode and resize, and rbvit's
    decoding version) with rbvit's decoding replaced in memory (:data:`DECODING_MODULES`: a notebook's
    ``decode.decode_rgb = mine``) when it is: the decoded-image cache and the run ids are keyed by it, so
    pixels another decoder made are never read back as the shipped decoder's. As shipped, exactly
    ``software_identity()``."""
    from robustbench_vit.identity import software_identity

    software = software_identity()
    swapped = {k: v for k, v in replaced_code(DECODING_MODULES).items() if _within(k, DECODING_MODULES)}
    return {**software, "rbvit-decode-replaced": digest(swapped)} if swapped else software


def refuse_replaced_code(workers: str, instead: str) -> None:
    """Raise a one-line ``ConfigError`` (naming what was replaced, and ``instead``) when code was replaced in
    this process (rbvit's, or an installed package's) and the work would run in ``workers``: fresh processes,
    which import the shipped code."""
    from robustbench_vit.library_patches import replaced_library_code

    if swapped := {**replaced_code(), **replaced_library_code()}:
        raise ConfigError(
            f"{workers} would not run the code replaced in this process ({', '.join(sorted(swapped))}); {instead}"
        )
