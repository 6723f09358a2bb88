"""``--model`` references -> :class:`ModelSpec`, without building or downloading anything."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from robustbench_vit.errors import ConfigError, RbvitError, UnknownNameError
from robustbench_vit.models.cards import read_card
from robustbench_vit.models.zoo import MODELS, ModelSpec, guess_family

__all__ = ["resolve_spec", "guess_family"]

log = logging.getLogger(__name__)


def resolve_spec(ref: str) -> ModelSpec:
    """Map a ``--model`` reference to a :class:`ModelSpec` without building anything.

    Zoo names win; then ``timm:<arch[.tag]>``, ``hf-hub:<org>/<name>`` (timm on the Hugging Face hub),
    ``torchvision:<name>[:<WEIGHTS>]``, ``robustbench:[<dataset>/]<threat>/<model_id>``, a model card ``.json``, a bare timm name (``vit_tiny_patch16_224``,
    ``resnet18.a1_in1k``), and last ``module:factory``.
    """
    if ref in MODELS:
        return MODELS.get(ref)
    if ref.startswith("hf-hub:"):
        name = ref.split("/")[-1]
        if "/" not in ref or not name:
            raise ConfigError(f"{ref!r}: write hf-hub:<org>/<model>, e.g. hf-hub:timm/resnet18.a1_in1k")
        return ModelSpec(name=name, source="timm", arch=ref, family=guess_family(name))
    if ref.startswith("torchvision:"):
        return _torchvision_spec(ref)
    if ref.startswith("robustbench:"):
        from robustbench_vit.models.robustbench_source import robustbench_spec

        return robustbench_spec(ref)
    if ":" not in ref and not ref.endswith(".json") and _is_timm_name(ref):
        _check_timm_name(ref)  # the tag, if any
        log.info("%r is not a zoo name: resolved as timm:%s", ref, ref)
        return _timm_spec(ref)
    if ref.startswith("timm:"):
        arch = ref[len("timm:") :]
        _check_timm_name(arch)
        return _timm_spec(arch)
    if ref.endswith(".json"):
        card = read_card(ref)
        return ModelSpec(
            name=card.name,
            source="card",
            arch=str(card.path),
            family=card.family,  # type: ignore[arg-type]
            label_space="card",
        )
    if ":" in ref and not Path(ref).exists():
        return ModelSpec(name=ref.split(":")[-1], source="entrypoint", arch=ref, family="cnn")
    message = MODELS.unknown_message(ref)
    hint = _timm_hint(ref)
    if hint:  # timm's closest names before the long list of zoo names
        message = message.replace(" Known:", f" {hint} Known:", 1) if " Known:" in message else message + hint
    raise UnknownNameError(message + "; or pass timm:<arch>, a card .json, or module:factory")


def _timm_spec(arch: str) -> ModelSpec:
    """A timm architecture's spec; its label space is timm's pretrained config's: a checkpoint without a
    classifier (``num_classes = 0``: DINO, MAE) has none, and is evaluated by feature analyses only."""
    import timm

    try:
        headless = timm.get_pretrained_cfg(arch).num_classes == 0  # the default tag when untagged
    except Exception:  # noqa: BLE001 - no pretrained config (test architectures): ImageNet's
        headless = False
    return ModelSpec(
        name=arch.replace("/", "_"),
        source="timm",
        arch=arch,
        family=guess_family(arch),
        label_space="none" if headless else "imagenet1k",
    )


def _timm_hint(ref: str) -> str:
    """timm's closest architecture names to a bare name that is neither a zoo nor a timm name."""
    import difflib

    import timm

    if ":" in ref or ref.endswith(".json"):
        return ""
    close = difflib.get_close_matches(ref.split(".")[0], timm.list_models(), n=3, cutoff=0.75)
    return f"timm has {', '.join('timm:' + c for c in close)}." if close else ""


def _is_timm_name(ref: str) -> bool:
    import timm

    return bool(ref) and timm.is_model(ref.split(".")[0])


def _torchvision_spec(ref: str) -> ModelSpec:
    """``torchvision:<builder>[:<WEIGHTS member>]`` -> a spec whose weights enum is fully named."""
    import difflib

    import torchvision

    name, _, tag = ref[len("torchvision:") :].partition(":")
    builders = torchvision.models.list_models()
    if name not in builders:
        close = difflib.get_close_matches(name, builders, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join('torchvision:' + c for c in close)}?" if close else ""
        raise UnknownNameError(f"torchvision has no model {name!r}{hint}")
    enum = torchvision.models.get_model_weights(name)
    try:
        member = enum[tag] if tag else enum.DEFAULT
    except KeyError:
        raise UnknownNameError(
            f"torchvision {name} has no weights {tag!r} (known: {', '.join(m.name for m in enum)})"
        ) from None
    return ModelSpec(
        name=f"{name}.tv_{member.name.lower()}",
        source="torchvision",
        arch=name,
        family=guess_family(name),
        weights=f"{enum.__name__}.{member.name}",
    )


def _check_timm_name(arch: str) -> None:
    """An unknown timm architecture or pretrained tag is an unknown name (exit 3) with timm's closest
    names, built nothing."""
    import difflib

    import timm

    base, _, tag = arch.partition(".")
    if timm.is_model(base):
        if not tag or arch in timm.list_pretrained(f"{base}.*"):
            return
        tags = timm.list_pretrained(f"{base}.*")
        close = difflib.get_close_matches(arch, tags, n=3, cutoff=0.6)
        known = ", ".join(close or tags[:8]) or "none"
        raise UnknownNameError(
            f"timm {base} has no pretrained tag {tag!r} ({'did you mean ' if close else 'tags: '}{known})"
        )
    close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else " (see timm.list_models())"
    )
    raise UnknownNameError(f"timm has no architecture {base!r}{hint}")


def row_key(ref: str) -> str:
    """The ``model`` value rows carry for a reference (``timm:x`` and ``x`` are one model); a name that only
    exists in the results (an ``nn.Module``'s ``name=``) is its own key."""
    try:
        return resolve_spec(ref).name
    except RbvitError:
        return ref


#: appended to the name of a model built with random weights (``resnet18.random``): its rows, plots and
#: legends can never pass for the pretrained model's
RANDOM_SUFFIX = ".random"


def stored_key(ref: str, present: Iterable[str]) -> str:
    """The ``model`` value the rows of ``ref`` carry among the names ``present``: its canonical key, else
    the same architecture with random weights (``<key>.random``) when only that was evaluated."""
    names = set(present)
    key = row_key(ref)
    candidates = [key, ref, f"{key}{RANDOM_SUFFIX}", f"{ref}{RANDOM_SUFFIX}"]
    if ref.endswith(RANDOM_SUFFIX):  # the name rows carry, given with a source prefix (timm:test_vit.random)
        candidates.append(f"{row_key(ref[: -len(RANDOM_SUFFIX)])}{RANDOM_SUFFIX}")
    for candidate in candidates:
        if candidate in names:
            return candidate
    return key
