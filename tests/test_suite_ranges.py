"""Every numeric suite parameter declares its range in its type, and no parameter accepts NaN, an
infinity, or a value outside that range (issue 24 §4: 37 fields used to take nan/inf/negatives)."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from robustbench_vit.errors import ConfigError
from robustbench_vit.suites import SUITES, make_suite
from robustbench_vit.suites.base import Range

#: parameters a suite cannot be built without
REQUIRED = {"transfer": {"source": "timm:test_vit"}}
PROBES = ("nan", "inf", "-inf", "-1", "0", "1e400")
#: string parameters that hold numbers (epsilons, step sizes): parsed by the suite itself
NUMERIC_STRINGS = {("pgd", "epsilons"), ("transfer", "eps"), ("transfer", "step")}


def numeric_fields():
    for name in SUITES.names():
        cls = SUITES.get(name)
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            yield name, f.name, hints[f.name]


def _ranges(hint):
    """(base type, Range or None) of a numeric hint (optional, tuple of, annotated); None if not numeric."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        base = _ranges(args[0])
        rng = next((a for a in args[1:] if isinstance(a, Range)), None)
        return (base[0], rng) if base else None
    if origin is tuple or (args and type(None) in args):
        inner = [a for a in args if a is not type(None) and a is not Ellipsis]
        return _ranges(inner[0]) if inner else None
    if hint in (int, float):
        return (hint, None)
    return None


CASES = [(s, f, h) for s, f, h in numeric_fields() if _ranges(h)]


def test_every_numeric_parameter_declares_a_range():
    assert len(CASES) >= 20
    missing = [f"{s}.{f}" for s, f, h in CASES if _ranges(h)[1] is None]
    assert not missing, f"numeric suite parameters without a Range: {missing}"


@pytest.mark.parametrize(("suite", "field", "hint"), CASES, ids=[f"{s}.{f}" for s, f, _ in CASES])
@pytest.mark.parametrize("probe", PROBES)
def test_numeric_parameters_refuse_what_their_range_refuses(suite, field, hint, probe):
    base, rng = _ranges(hint)
    value = float(probe)
    allowed = math.isfinite(value) and rng.allows(value) and (base is float or value.is_integer())
    params = {**REQUIRED.get(suite, {}), field: probe}
    if allowed:
        try:
            make_suite(suite, params)
        except ConfigError as e:  # the suite's own cross-field rule may still refuse it: never silently
            assert field in str(e) or "must" in str(e)
    else:
        with pytest.raises(ConfigError):
            make_suite(suite, params)


@pytest.mark.parametrize(("suite", "field"), sorted(NUMERIC_STRINGS))
@pytest.mark.parametrize("probe", ["nan", "inf", "-1/255", "1/0"])
def test_numeric_string_parameters_refuse_nonsense(suite, field, probe):
    with pytest.raises(ConfigError):
        make_suite(suite, {**REQUIRED.get(suite, {}), field: probe})


def _list_fields():
    for suite, field, hint in numeric_fields():
        inner = typing.get_args(hint)
        if typing.get_origin(hint) is tuple or (inner and typing.get_origin(inner[0]) is tuple):
            yield suite, field


LIST_CASES = sorted(set(_list_fields()))


@pytest.mark.parametrize(("suite", "field"), LIST_CASES, ids=[f"{s}.{f}" for s, f in LIST_CASES])
def test_list_parameters_refuse_a_value_listed_twice(suite, field):
    """A value listed twice would name two conditions alike (an internal error after the model loaded) or
    count one condition twice: every list parameter refuses it where it is parsed, naming the value."""
    default = getattr(make_suite(suite, REQUIRED.get(suite, {})), field)
    hint = typing.get_type_hints(SUITES.get(suite), include_extras=True)[field]
    samples = {
        ("pgd", "epsilons"): "4/255",
        ("representations", "layers"): "blocks.0",
        ("representations", "compare_layers"): "blocks.0",
    }
    while typing.get_origin(hint) is not tuple:  # an optional list
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    choices = typing.get_args(typing.get_args(hint)[0])  # a list of choices: its first one
    value = samples.get((suite, field)) or (str(default[0]) if default else str(choices[0]))
    with pytest.raises(ConfigError, match="twice"):
        make_suite(suite, {**REQUIRED.get(suite, {}), field: f"{value},{value}"})
    with pytest.raises(ConfigError, match="twice"):
        make_suite(suite, {**REQUIRED.get(suite, {}), field: [value, value]})
