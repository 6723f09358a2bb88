"""rbvit's own computing code replaced in memory by code from outside it (a notebook's experiment).

rbvit's code is keyed by each suite's ``version`` (``tests/test_code_versions.py`` asks for a bump when the
code changes), which says nothing of a function a notebook sets in its place: ``OPS["fog"] = my_fog``,
``noise_blur.gaussian_noise = mine``, ``Occlusion.perturb = mine``, ``PixelModel.forward = mine`` (the
normalisation inside every model), ``loading.read_state_dict = mine``, a decoder function (:func:`running_software`: it keys the decoded-image
cache too). Computed under the shipped run id, such
numbers would later be resumed as the shipped code's. :func:`replaced_code` finds every function or class
defined outside rbvit (neither rbvit's nor an installed package's) that sits where rbvit's computing modules
look code up (module members, the values of their dicts, lists and tuples, the attributes of their classes),
any named function or class under a member name not its own (``gaussian_blur = torch.relu``), every data
table registered with :func:`ship` (the corruption tables) whose content differs from what
was shipped (edited in place or rebound), and every upper-case constant whose value its module's source
assigns literally (``RELEASE_JPEG_QUALITY = 85``, ``AUTO_CELL_PX = 16``, ``CIFAR10_CLASSES = (...)``)
rebound to another value. They key the run (:meth:`robustbench_vit.suites.base.Suite.identity`)
only when something was replaced, so shipped runs keep their ids. Not found: an installed package's function
under its own name, or one of rbvit's lambdas moved to another ``OPS`` key.
"""

from __future__ import annotations

import ast
import functools
import operator
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
    "NEUTRAL_CONSTANTS",
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


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod}  # fmt: skip


def _literal(node: ast.expr) -> Any:
    """The value of a constant expression: literals, tuples and lists of them, and arithmetic on numbers
    (``256 / 224``, ``2**20``, ``-1``); anything else raises ``ValueError``."""
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _literal(node.left), _literal(node.right)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            raise ValueError("arithmetic on non-numbers")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    raise ValueError("not a constant expression")


@functools.cache
def _shipped_constants(path: str) -> dict[str, Any]:
    """``NAME -> value`` of the upper-case constants a module's source assigns literally at its top level and
    never rebinds (read once per file: the source as shipped, or as edited in a checkout, which code_manifest
    keys)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    # a name the module's own functions rebind (``global _PERMUTE``: a cache filled on first use) is state
    state = {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}
    out = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        target = node.target if isinstance(node, ast.AnnAssign) and node.value is not None else target
        if isinstance(target, ast.Name) and target.id.isupper() and target.id not in state:
            try:
                out[target.id] = _literal(node.value)  # type: ignore[union-attr]
            except (ValueError, ArithmeticError, RecursionError):
                continue
    return out


def _same_constant(now: Any, shipped: Any) -> bool:
    """``now`` is the value the source assigned (lists read as the tuples :func:`_literal` gives; 2 is not
    2.0, nor True 1)."""
    if isinstance(now, (list, tuple)) and isinstance(shipped, tuple):
        return len(now) == len(shipped) and all(_same_constant(a, b) for a, b in zip(now, shipped))
    return type(now) is type(shipped) and now == shipped


#: constants that never change a number (how much is read ahead or computed at once, what a message or a
#: download says): a notebook may tune them without making its runs other runs
NEUTRAL_CONSTANTS = frozenset(
    {
        ("robustbench_vit.attacks.autoattack", "INSTALL"),
        ("robustbench_vit.models.robustbench_source", "INSTALL"),
        ("robustbench_vit.data.loader", "READ_AHEAD"),
        ("robustbench_vit.data.registry", "SAMPLES_URL"),
        ("robustbench_vit.data.decode", "DEVICE_DECODE_BYTES"),
        ("robustbench_vit.models.cards", "_NOTES"),
        ("robustbench_vit.models.hub", "CONNECT_TIMEOUT_S"),
        ("robustbench_vit.models.hub", "HF_HOST"),
        ("robustbench_vit.perturbations.corruptions", "CPU_CHUNK"),
        ("robustbench_vit.suites.memory", "FORWARD_CHUNK"),
        ("robustbench_vit.suites.describe", "PARAMS_BEGIN"),
        ("robustbench_vit.suites.describe", "PARAMS_END"),
        ("robustbench_vit.suites.autoattack", "SQUARE_GAIN_ALERT"),
    }
)


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
        path = getattr(module, "__file__", None)
        for attr, shipped in _shipped_constants(path).items() if path else ():
            if (name, attr) in NEUTRAL_CONSTANTS or attr not in vars(module):
                continue
            if not _same_constant(now := vars(module)[attr], shipped):  # rebound: AUTO_CELL_PX = 8
                found[f"{name}.{attr}"] = digest(repr(now))
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
