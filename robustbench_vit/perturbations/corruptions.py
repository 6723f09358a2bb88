"""Common corruptions (Hendrycks & Dietterich 2019) as batched torch functions on the input's device.

Parameter tables are those of the ImageNet-C reference implementation (the ``imagecorruptions``
package); images are RGB in [0, 1], shape (B, 3, H, W). Random draws come from a device generator
seeded from the CPU ``generator`` argument.

Implemented here (torch backend): gaussian_noise, shot_noise, impulse_noise, speckle_noise,
gaussian_blur, defocus_blur, zoom_blur, brightness, contrast, saturate, jpeg_compression, pixelate,
fog, frost. The others (glass_blur, motion_blur, snow, spatter, elastic_transform) run
with the reference backend only (:func:`reference_corrupt`); :data:`TORCH_CORRUPTIONS` lists what
the torch backend has.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_vit.errors import ConfigError

__all__ = ["TORCH_CORRUPTIONS", "ALL_CORRUPTIONS", "corrupt", "reference_corrupt", "PARAMS"]

ALL_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip

#: severity 1..5 parameters (ImageNet tables of the reference implementation)
PARAMS: dict[str, list] = {
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
    "speckle_noise": [0.15, 0.2, 0.35, 0.45, 0.6],
    "gaussian_blur": [1, 2, 3, 4, 6],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
    "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    "jpeg_compression": [25, 18, 15, 10, 7],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
    "zoom_blur": [(1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.02), (1.0, 1.26, 0.02), (1.0, 1.31, 0.03)],
    "fog": [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
}


def _dev_gen(x: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=x.device).manual_seed(seed)


def _gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def _fft_conv(x: torch.Tensor, k: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size 2-D convolution of every channel with an odd kernel, padded with ``mode``; via FFT
    (several times faster than direct convolution for the 17-49 px blur kernels on CPU and GPU)."""
    kh, kw = k.shape
    rh, rw = kh // 2, kw // 2
    h, w = x.shape[-2:]
    z = F.pad(x, (rw, rw, rh, rh), mode=mode)
    big_h, big_w = z.shape[-2:]
    kp = torch.zeros(big_h, big_w, device=x.device, dtype=torch.float32)
    kp[:kh, :kw] = k.to(x.device, torch.float32).flip(0, 1)
    y = torch.fft.irfft2(torch.fft.rfft2(z.float()) * torch.fft.rfft2(kp), s=(big_h, big_w))
    return y[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w]


def _disk_kernel(radius: int, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk: a binary disk, normalised, then Gaussian-blurred (cv2)."""
    import cv2

    size = 8 if radius <= 8 else radius
    ks = (3, 3) if radius <= 8 else (5, 5)
    grid = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return torch.from_numpy(cv2.GaussianBlur(disk, ksize=ks, sigmaX=alias_blur))


def _value_scale(x: torch.Tensor, new_v: torch.Tensor) -> torch.Tensor:
    """Replace HSV value V = max(r, g, b) by ``new_v`` keeping hue and saturation."""
    v = x.amax(dim=1, keepdim=True)
    scaled = x * (new_v / v.clamp_min(1e-12))
    return torch.where(v > 0, scaled, new_v.expand_as(x))


def _set_saturation(x: torch.Tensor, mul: float, add: float) -> torch.Tensor:
    """HSV saturation S <- clip(S * mul + add, 0, 1), hue and value kept (skimage conventions)."""
    v = x.amax(dim=1, keepdim=True)
    s = torch.where(v > 0, (v - x.amin(dim=1, keepdim=True)) / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * mul + add).clamp(0, 1)
    out = v - (v - x) * s_new / s.clamp_min(1e-12)
    # grey pixels have hue 0 (red): r = V, g = b = V (1 - S')
    grey = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(s > 0, out, grey)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
    cpu = u8.cpu() if x.device.type != "cuda" else u8
    encoded = encode_jpeg(list(cpu), quality=quality)
    decoded = decode_jpeg(encoded, device=x.device if x.device.type == "cuda" else "cpu")
    return torch.stack(list(decoded)).to(x.device).float() / 255


def _box_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of PIL's BOX downsampling (pixel-centre membership, normalised)."""
    scale = n_in / n_out
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for j in range(n_out):
        centre, support = (j + 0.5) * scale, 0.5 * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        for i in range(lo, hi):
            t = (i - centre + 0.5) / scale
            if -0.5 < t <= 0.5:
                m[j, i] = 1.0
        m[j] /= m[j].sum()
    return m.float()


def _pixelate(x: torch.Tensor, c: float) -> torch.Tensor:
    """PIL BOX downsampling to int(size * c), then NEAREST upsampling, as the reference does."""
    h, w = x.shape[-2:]
    mh, mw = _box_matrix(h, int(h * c)).to(x.device), _box_matrix(w, int(w * c)).to(x.device)
    small = torch.round(torch.einsum("oh,bchw,pw->bcop", mh, x * 255, mw)) / 255  # PIL keeps uint8
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


def _zoom_blur(x: torch.Tensor, c: tuple[float, float, float]) -> torch.Tensor:
    """Mean of the image and its centre crops zoomed by each factor (order-1 zoom as scipy's)."""
    h, w = x.shape[-2:]
    factors = np.arange(*c)
    out = torch.zeros_like(x)
    for z in factors:
        ch, cw = int(np.ceil(h / z)), int(np.ceil(w / z))
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = x[..., top : top + ch, left : left + cw]
        zoomed = F.interpolate(crop, size=(round(ch * z), round(cw * z)), mode="bilinear", align_corners=True)
        out += zoomed[..., :h, :w]
    return (x + out) / (len(factors) + 1)


def _plasma_fractal(batch: int, mapsize: int, decay: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, mapsize, mapsize) diamond-square height maps in [0, 1] (the reference's algorithm, batched)."""
    m = torch.zeros(batch, mapsize, mapsize, device=device)
    step, wibble = mapsize, 100.0

    def wibbled(a: torch.Tensor) -> torch.Tensor:
        return a / 4 + wibble * (torch.rand(a.shape, generator=gen, device=device) * 2 - 1) * wibble

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, 1)
        sq = sq + torch.roll(sq, -1, 2)
        m[:, half::step, half::step] = wibbled(sq)
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2))
        m[:, half::step, 0::step] = wibbled(dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1))
        step //= 2
        wibble /= decay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


def _fog(x: torch.Tensor, c: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    fractal = _plasma_fractal(b, size, c[1], gen, x.device)[:, None, :h, :w]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + c[0] * fractal) * max_val / (max_val + c[0])


_FROST: list[torch.Tensor] = []


def _frost_images() -> list[torch.Tensor]:
    """The reference's six frost photographs (shipped in the imagecorruptions package), RGB float."""
    if not _FROST:
        import importlib.resources

        import cv2

        root = importlib.resources.files("imagecorruptions") / "frost"
        for name in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"):
            with importlib.resources.as_file(root / name) as path:
                bgr = cv2.imread(str(path))
            _FROST.append(torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1).float() / 255)
    return _FROST


def _frost(x: torch.Tensor, c: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    import cv2

    b, _, h, w = x.shape
    layers = []
    for _ in range(b):
        img = _frost_images()[int(torch.randint(0, 6, (1,), generator=generator))]
        fh, fw = img.shape[-2:]
        scale = 1.1 * max(1.0, h / fh, w / fw)
        arr = (img.permute(1, 2, 0).numpy() * 255).astype(np.float32)
        resized = cv2.resize(arr, (int(np.ceil(fw * scale)), int(np.ceil(fh * scale))), interpolation=cv2.INTER_CUBIC)
        top = int(torch.randint(0, resized.shape[0] - h, (1,), generator=generator))
        left = int(torch.randint(0, resized.shape[1] - w, (1,), generator=generator))
        layers.append(torch.from_numpy(resized[top : top + h, left : left + w].copy()).permute(2, 0, 1) / 255)
    return c[0] * x + c[1] * torch.stack(layers).to(x.device)


def corrupt(x: torch.Tensor, name: str, severity: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1-5) to a batch in [0, 1] with the torch backend.

    Example:
        >>> y = corrupt(torch.rand(2, 3, 64, 64), "contrast", 3)
        >>> y.shape
        torch.Size([2, 3, 64, 64])
    """
    if name not in ALL_CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; known: {', '.join(ALL_CORRUPTIONS)}")
    if name not in PARAMS:
        raise ConfigError(f"{name} has no torch implementation yet; use -p backend=imagecorruptions")
    if not 1 <= severity <= 5:
        raise ConfigError(f"severity must be 1..5, got {severity}")
    c = PARAMS[name][severity - 1]
    x = x.float()
    if name == "gaussian_noise":
        out = x + c * torch.randn(x.shape, generator=_dev_gen(x, generator), device=x.device)
    elif name == "shot_noise":
        out = torch.poisson(x * c, generator=_dev_gen(x, generator)) / c
    elif name == "impulse_noise":
        r = torch.rand(x.shape, generator=_dev_gen(x, generator), device=x.device)
        out = torch.where(r < c / 2, torch.zeros_like(x), torch.where(r < c, torch.ones_like(x), x))
    elif name == "speckle_noise":
        out = x + x * c * torch.randn(x.shape, generator=_dev_gen(x, generator), device=x.device)
    elif name == "gaussian_blur":
        k1 = _gaussian_kernel1d(c)
        out = _fft_conv(x, torch.outer(k1, k1), mode="replicate")  # skimage mode='nearest'
    elif name == "defocus_blur":
        out = _fft_conv(x, _disk_kernel(*c), mode="reflect")  # cv2.filter2D's default border (reflect-101)
    elif name == "contrast":
        m = x.mean(dim=(2, 3), keepdim=True)
        out = (x - m) * c + m
    elif name == "brightness":
        out = _value_scale(x, (x.amax(dim=1, keepdim=True) + c).clamp(0, 1))
    elif name == "saturate":
        out = _set_saturation(x, *c)
    elif name == "jpeg_compression":
        out = _jpeg(x, c)
    elif name == "zoom_blur":
        out = _zoom_blur(x, c)
    elif name == "fog":
        out = _fog(x, c, _dev_gen(x, generator))
    elif name == "frost":
        out = _frost(x, c, generator)
    else:  # pixelate
        out = _pixelate(x, c)
    # the reference returns uint8 images: quantise the same way (values are floored by np.uint8)
    return torch.floor(out.clamp(0, 1) * 255) / 255


TORCH_CORRUPTIONS = tuple(PARAMS)


#: reference functions that ignore numpy's global seed and take their own ``seed=`` argument
_OWN_SEED = ("impulse_noise", "glass_blur")


def reference_corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int) -> torch.Tensor:
    """The ``imagecorruptions`` reference, image by image on the CPU (seeded; slow)."""
    from imagecorruptions import corrupt as ic_corrupt

    if name not in ALL_CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; known: {', '.join(ALL_CORRUPTIONS)}")
    u8 = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(u8)
    state = np.random.get_state()
    try:
        for i, img in enumerate(u8):
            image_seed = (seed + i) % 2**32
            np.random.seed(image_seed)  # most reference functions draw from numpy's global RNG ...
            # ... but impulse_noise and glass_blur draw from their own generator unless given a seed
            kwargs = {"seed": image_seed} if name in _OWN_SEED else {}
            res = np.asarray(ic_corrupt(img, corruption_name=name, severity=severity, **kwargs))
            out[i] = np.uint8(res[: img.shape[0], : img.shape[1]])
    finally:
        np.random.set_state(state)
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device).float() / 255


