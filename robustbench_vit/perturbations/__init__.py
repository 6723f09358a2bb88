"""Pure, batched, seeded perturbations ``f(x, *, params, generator) -> x`` on RGB in [0, 1].

No model, no I/O, no global RNG: randomness comes from the ``generator`` argument. Small random
draws (masks, permutations) use a CPU generator and are moved to ``x.device``, so the same seed
gives the same masks on CPU and CUDA.
"""

from robustbench_vit.perturbations.fourier import fourier_basis, fourier_noise, frequency_filter
from robustbench_vit.perturbations.occlusion import drop_cells, random_patch_drop, saliency_patch_drop
from robustbench_vit.perturbations.patch_shuffle import patch_shuffle

__all__ = [
    "fourier_basis",
    "fourier_noise",
    "frequency_filter",
    "random_patch_drop",
    "saliency_patch_drop",
    "drop_cells",
    "patch_shuffle",
]
