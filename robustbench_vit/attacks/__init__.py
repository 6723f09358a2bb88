"""Attacks in [0, 1] pixel space: the base owns the loop (restarts, projection, clamping, checks),
subclasses implement one step rule."""

from robustbench_vit.attacks.base import Attack, AttackResult, parse_eps
from robustbench_vit.attacks.pgd import PGD, input_diversity, translation_kernel
from robustbench_vit.attacks.self_ensemble import SelfEnsemble, parse_blocks

__all__ = [
    "Attack",
    "AttackResult",
    "PGD",
    "parse_eps",
    "input_diversity",
    "translation_kernel",
    "SelfEnsemble",
    "parse_blocks",
]
