"""Severity 1..5 parameter tables.

``IMAGENET``: the tables of the ImageNet-C reference implementation as packaged by ``imagecorruptions``
(Michaelis et al. 2019, whose code is our reference backend). ``CIFAR10``: the tables Hendrycks &
Dietterich used to build CIFAR-10-C (``make_cifar_c.py`` in hendrycks/robustness), for 32 px images.
Tuples are unpacked by the implementation; their meaning is documented where they are used.
"""

from __future__ import annotations

from typing import Literal

from robustbench_vit.errors import ConfigError
from robustbench_vit.replaced_code import ship

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "IMAGENET",
    "CIFAR10",
    "IMAGENET_C_RELEASE",
    "TABLES",
    "check_corruption",
    "RELEASE_RESIZE",
    "RELEASE_CROP",
    "RELEASE_JPEG_QUALITY",
]


def check_corruption(name: str) -> None:
    """Raise a one-line ConfigError naming the known corruptions when ``name`` is not one of them."""
    if name not in ALL_CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; known: {', '.join(ALL_CORRUPTIONS)}")


IMAGENET: dict[str, list] = {
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],  # noise std
    "shot_noise": [60, 25, 12, 5, 3],  # photons per unit intensity
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],  # salt-and-pepper fraction
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],  # disk radius, alias blur
    "glass_blur": [
        (0.7, 1, 2),
        (0.9, 2, 1),
        (1, 2, 3),
        (1.1, 3, 2),
        (1.5, 4, 2),
    ],  # sigma, max delta, iterations
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],  # radius, sigma
    "zoom_blur": [
        (1.0, 1.11, 0.01),
        (1.0, 1.16, 0.01),
        (1.0, 1.21, 0.02),
        (1.0, 1.26, 0.02),
        (1.0, 1.31, 0.03),
    ],
    # snow: noise mean, noise std, zoom, threshold, blur radius, blur sigma, image weight
    "snow": [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],  # image weight, frost weight
    "fog": [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],  # fog weight, fractal decay
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],  # added to HSV value
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],  # factor around the mean
    # elastic: displacement scale alpha (sigma = 1% of the size, uniform field +-0.5% of the height)
    "elastic_transform": [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],  # downscale factor
    "jpeg_compression": [25, 18, 15, 10, 7],  # quality
    "speckle_noise": [0.15, 0.2, 0.35, 0.45, 0.6],  # multiplicative noise std
    "gaussian_blur": [1, 2, 3, 4, 6],  # sigma
    # spatter: noise mean, noise std, blur sigma, threshold, intensity, mud (1) or water (0)
    "spatter": [
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ],
    "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],  # HSV saturation mul, add
}

CIFAR10: dict[str, list] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [
        (1.0, 1.06, 0.01),
        (1.0, 1.11, 0.01),
        (1.0, 1.16, 0.01),
        (1.0, 1.21, 0.01),
        (1.0, 1.26, 0.01),
    ],
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    # elastic (CIFAR-10-C keeps the random affine step): alpha, sigma, affine jitter, in pixels of a 32 px image
    "elastic_transform": [
        (32 * 0, 32 * 0, 32 * 0.08),
        (32 * 0.05, 32 * 0.2, 32 * 0.07),
        (32 * 0.08, 32 * 0.06, 32 * 0.06),
        (32 * 0.1, 32 * 0.04, 32 * 0.05),
        (32 * 0.1, 32 * 0.03, 32 * 0.03),
    ],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "spatter": [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
}

#: make_imagenet_c.py (hendrycks/robustness), the script that produced the released ImageNet-C files from
#: resize 256 / centre crop 224 images. Same tables as ``IMAGENET`` except elastic_transform, which there
#: keeps the random affine step and uses other constants (alpha, sigma, affine jitter in px; its comment
#: notes 244 should have been 224). The structural differences (frost photos unscaled and 5 of 6, BOX
#: up-sampling in pixelate, centre-trimmed zooms in zoom_blur and snow, JPEG q85 storage) live in the
#: functions that take ``table="imagenet_c_release"``.
IMAGENET_C_RELEASE: dict[str, list] = {
    **IMAGENET,
    "elastic_transform": [
        (244 * 2, 244 * 0.7, 244 * 0.1),
        (244 * 2, 244 * 0.08, 244 * 0.2),
        (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02),
        (244 * 0.12, 244 * 0.01, 244 * 0.02),
    ],
}

#: resize + crop that make_imagenet_c.py applied before corrupting (torchvision Resize(256), CenterCrop(224))
RELEASE_RESIZE, RELEASE_CROP = 256, 224
#: JPEG quality the released files were stored with (PIL, optimize=True)
RELEASE_JPEG_QUALITY = 85

#: every table by name; its content as shipped is remembered, so a table edited in memory is another run
TABLES: dict[str, dict[str, list]] = ship(
    __name__,
    "TABLES",
    {"imagenet": IMAGENET, "cifar10": CIFAR10, "imagenet_c_release": IMAGENET_C_RELEASE},
)

#: every corruption, in the reference's order (the ImageNet table's): the 15 benchmark corruptions of
#: ImageNet-C, then the extra ones (4 in the paper; a corruption added to the tables lands here)
ALL_CORRUPTIONS: tuple[str, ...] = tuple(IMAGENET)
BENCHMARK_CORRUPTIONS: tuple[str, ...] = ALL_CORRUPTIONS[:15]
EXTRA_CORRUPTIONS: tuple[str, ...] = ALL_CORRUPTIONS[15:]
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: types of suite parameters (checked by ``make_suite``)
CorruptionName = Literal[ALL_CORRUPTIONS]  # type: ignore[valid-type]
TableName = Literal[tuple(TABLES)]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
assert all(set(t) == set(ALL_CORRUPTIONS) for t in TABLES.values()), "every table lists every corruption"
