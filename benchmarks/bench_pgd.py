"""PGD cost: time per attack step vs one forward+backward pass to the input, and vs foolbox.

Targets (issue 6): our step <= 1.15x a bare forward+backward; not slower than foolbox's LinfPGD on
the same images and settings. Default model: timm ``resnet18`` (random weights, 224 px).

Usage: python benchmarks/bench_pgd.py [--model M] [--batch-size B] [--steps S] [--device cuda] [--dtype bf16]
"""

from __future__ import annotations

import foolbox as fb
import torch
import torch.nn.functional as F
from _common import bench_parser, timed, wants_pretrained

from robustbench_vit.attacks import PGD
from robustbench_vit.models.loading import load_model


def main() -> None:
    ap = bench_parser(__doc__, model="timm:resnet18", batch_size=32)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    # timing needs no weights: only the offline efficientnet-lite0 loads its own
    pretrained = wants_pretrained(args) and args.model == "efficientnet_lite0"
    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=pretrained)
    x = torch.rand(args.batch_size, 3, *model.data_config.image_size, device=model.device)
    with torch.no_grad():
        y = model(x).argmax(1)

    def fwd_bwd() -> None:
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y), xr)

    fwd_bwd()
    t_fb = timed(fwd_bwd, model.device, repeat=3)
    eps = 4 / 255
    ours = PGD(eps=eps, steps=args.steps, step_size=eps / 4, random_start=True)
    t_ours = timed(
        lambda: ours(model, x, y, generator=torch.Generator().manual_seed(0)), model.device, repeat=2
    )
    fmodel = fb.PyTorchModel(model.module, bounds=(0, 1), device=model.device)
    fatk = fb.attacks.LinfPGD(abs_stepsize=eps / 4, steps=args.steps, random_start=True)
    t_fool = timed(
        lambda: fatk(fmodel, x, fb.criteria.Misclassification(y), epsilons=eps), model.device, repeat=2
    )
    # both attacks also run one extra forward pass to report success; count it as 1/3 of a step
    per_ours = t_ours / (args.steps + 1 / 3)
    print(f"model {args.model} on {model.device} ({args.dtype}), batch {args.batch_size}, {args.steps} steps")
    print(f"  forward+backward        {t_fb * 1e3:8.1f} ms")
    print(
        f"  ours per step           {per_ours * 1e3:8.1f} ms  -> {per_ours / t_fb:.2f}x fwd+bwd (target <= 1.15x)"
    )
    print(
        f"  foolbox LinfPGD total   {t_fool:8.2f} s vs ours {t_ours:.2f} s -> foolbox / ours = {t_fool / t_ours:.2f}x (target >= 1)"
    )


if __name__ == "__main__":
    main()
