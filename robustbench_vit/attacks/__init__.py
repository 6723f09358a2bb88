"""Attacks in [0, 1] pixel space: the base owns the loop (restarts, projection, clamping, checks),
subclasses implement one step rule."""

from robustbench_vit.attacks.base import Attack, AttackResult, eps_label, parse_eps, unique_eps_labels
from robustbench_vit.attacks.pgd import PGD, input_diversity, translation_kernel
from robustbench_vit.attacks.self_ensemble import SelfEnsemble, parse_blocks

__all__ = [
    "Attack",
    "AttackResult",
    "PGD",
    "parse_eps",
    "eps_label",
    "unique_eps_labels",
    "input_diversity",
    "translation_kernel",
    "SelfEnsemble",
    "parse_blocks",
]
