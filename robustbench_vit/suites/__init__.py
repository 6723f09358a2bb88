"""Registered suites. Adding a suite = one module here + one line in this list."""

from robustbench_vit.suites import (  # noqa: F401
    autoattack,
    clean,
    corruptions,
    fourier,
    imagenet_ar,
    imagenet_c,
    imagenet_o,
    imagenet_p,
    occlusion,
    patch_shuffle,
    pgd,
    representations,
    shape_bias,
    transfer,
)
from robustbench_vit.suites.base import SUITES, Condition, EvalContext, Suite, register_suite
from robustbench_vit.suites.factory import make_suite

__all__ = ["SUITES", "Condition", "EvalContext", "Suite", "make_suite", "register_suite"]
