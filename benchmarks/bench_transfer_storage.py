"""Transfer adversarials: which storage keeps the fooling rate of the float32 iterate (issue 25 §2).

ATViT feeds the float32 adversarial straight to the target. rbvit crafts once and stores the examples
for every target, so storage must not move them. Compared with the float32 iterate, on the shared
samples, for MI-FGSM and DIM at several budgets:

  uint8            round(x * 255), clipped to the uint8 ball (the storage before issue 25)
  float16          the iterate in half precision (2 bytes / value)
  uint8+residual   round(x * 255) and the float16 residual x * 255 - round(x * 255) (3 bytes / value)

Printed per format: the largest pixel move (in 1/255 levels), target predictions that change, and
the fooling rate against the float32 one. The target is the source model looking at the mirrored
image (a different function of the pixels, so transfer is partial and many images sit near the
decision boundary).

Usage: python benchmarks/bench_transfer_storage.py [--limit 200] [--model efficientnet_lite0]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import bench_parser, wants_pretrained

from robustbench_vit.attacks import PGD
from robustbench_vit.attacks.storage import decode_adversarial, encode_adversarial
from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.registry import open_dataset
from robustbench_vit.data.subset import stratified_limit
from robustbench_vit.models.loading import load_model


def quantize_in_ball(adv: torch.Tensor, x8: torch.Tensor, eps: float) -> torch.Tensor:
    """The storage before issue 25: rounded to uint8 and kept inside the L-inf ball of the uint8 image."""
    r = round(eps * 255 + 1e-6)
    adv8 = torch.minimum(torch.maximum((adv * 255).round(), x8.float() - r), x8.float() + r)
    return adv8.clamp(0, 255).to(torch.uint8)


def main() -> None:
    ap = bench_parser(__doc__, model="efficientnet_lite0", data=True, limit=200, batch_size=50)
    ap.add_argument("--eps", default="1,4,16", help="budgets in 1/255 (comma separated)")
    args = ap.parse_args()
    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    _, ds = open_dataset(args.data)
    idx = stratified_limit(ds.targets, args.limit, 0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = ImageCache(ds, model.data_config, Path(tmp) / "cache")
        cache.ensure(idx)
        x8 = cache.batch(idx).to(model.device)
    y = torch.as_tensor(ds.targets[idx], device=model.device)

    def target(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(b.flip(-1)).argmax(1) for b in t.split(args.batch_size)])

    clean_pred = target(x8.float() / 255)
    print(f"{args.model} on {model.device}, {len(idx)} images; target = the model on mirrored images")
    print(
        f"{'attack':>7} {'eps':>6} {'format':>15} {'max move':>10} {'preds moved':>12} {'fool rate':>10} {'float32':>8}"
    )
    for attack in ("mifgsm", "dim"):
        for e in (float(v) for v in args.eps.split(",")):
            eps = e / 255
            pgd = PGD(
                norm="linf",
                eps=eps,
                steps=10,
                step_size=eps / 10,
                random_start=False,
                momentum=1.0,
                di_prob=1.0 if attack == "dim" else 0.0,
                keep="last",
            )
            adv = torch.cat(
                [
                    pgd(model, (xb.float() / 255), yb, generator=torch.Generator().manual_seed(i)).x_adv
                    for i, (xb, yb) in enumerate(zip(x8.split(args.batch_size), y.split(args.batch_size)))
                ]
            )
            ref_pred = target(adv)
            ref_fool = (ref_pred != clean_pred).float().mean().item()
            formats = {
                "uint8": quantize_in_ball(adv, x8, eps).float() / 255,
                "float16": adv.half().float(),
                "uint8+residual": decode_adversarial(encode_adversarial(adv), adv.device),
            }
            for name, stored in formats.items():
                pred = target(stored)
                move = ((stored - adv).abs().max() * 255).item()
                fool = (pred != clean_pred).float().mean().item()
                moved = int((pred != ref_pred).sum())
                print(
                    f"{attack:>7} {e:>4g}/255 {name:>15} {move:>10.5f} {moved:>12d} {fool:>10.4f} {ref_fool:>8.4f}"
                )


if __name__ == "__main__":
    main()
