"""AutoAttack cost: the ``autoattack`` suite (stage by stage per batch, outcomes stored for resume)
vs the pyautoattack package's ``run_standard_evaluation`` called directly on the same images, images/s
in one run. Target (issue 13): not slower than the package.

Default: the offline pretrained efficientnet-lite0 on the shared ImageNet samples (a model with random
weights classifies nothing correctly, so no stage would run), reduced iterations so it finishes in a
minute on a CPU; ``--full`` uses AutoAttack's own 100 iterations and 5000 Square queries. Without the
shared data, ``--data SYNTHETIC --relabel`` files every image under the class the model predicts for it
(links in a temporary folder), so every image is correctly classified and every stage has work.
Usage: python benchmarks/bench_autoattack.py [--model M] [--limit N] [--batch-size B] [--device cuda] [--full]
       [--data FOLDER --relabel]
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch
from _common import IMAGENET_SAMPLES, bench_parser, wants_pretrained

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.registry import open_dataset
from robustbench_vit.data.subset import stratified_limit
from robustbench_vit.engine.runner import evaluate
from robustbench_vit.models.loading import load_model
from robustbench_vit.results.worst_case import final_attack_rows


def _relabelled(model, data: str, limit: int, tmp: Path) -> Path:
    """A folder of links to ``limit`` images of ``data``, each under the wnid the model predicts for it."""
    _, ds = open_dataset(data)
    idx = stratified_limit(ds.targets, limit, 0)
    cache = ImageCache(ds, model.data_config, tmp / "relabel-cache")
    cache.ensure(idx)
    x = cache.batch(idx)
    with torch.no_grad():
        pred = torch.cat([model(b.to(model.device).float() / 255).argmax(1).cpu() for b in x.split(64)])
    out = tmp / "relabelled"
    for i, p in zip(idx, pred.tolist()):
        folder = out / model.label_space.wnids[p]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(ds.items[i]).name).symlink_to(ds.root / ds.items[i])
    return out


def main() -> None:
    ap = bench_parser(__doc__, model="efficientnet_lite0", data=True, limit=32, batch_size=32)
    ap.add_argument("--eps", default="0.001", help="L-inf budget (small, so later stages have work)")
    ap.add_argument("--full", action="store_true", help="AutoAttack's own iterations and queries")
    ap.add_argument("--relabel", action="store_true", help="label each image with the model's prediction")
    args = ap.parse_args()
    from pyautoattack import AutoAttack

    from robustbench_vit.attacks import parse_eps

    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    n_iter, queries = (100, 5000) if args.full else (10, 100)
    params = {"eps": args.eps, "n_iter": n_iter, "square_queries": queries}
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(data=args.data or str(IMAGENET_SAMPLES), limit=args.limit, batch_size=args.batch_size)
        if args.relabel:
            common["data"] = str(_relabelled(model, common["data"], args.limit, Path(tmp)))
        evaluate(model, "clean", cache_dir=tmp, out=None, progress=False, **common)  # decode once
        xw = torch.rand(2, 3, *model.data_config.image_size, device=model.device, requires_grad=True)
        model(xw).sum().backward()  # first backward pass (allocator, autograd) outside both timings
        t = time.perf_counter()
        df = evaluate(
            model, "autoattack", suite_params=params, cache_dir=tmp, out=None, progress=False, **common
        )
        t_ours = time.perf_counter() - t
        _, ds = open_dataset(common["data"])
        idx = stratified_limit(ds.targets, args.limit, 0)
        # the CPU decoder's cache entry, filled here if the suite's run decoded with nvjpeg
        cache = ImageCache(ds, model.data_config, tmp)
        cache.ensure(idx)
        x = cache.batch(idx).to(model.device).float() / 255
        y = torch.as_tensor(
            [model.label_space.index_of(ds.classes[i]) for i in ds.targets[idx]], device=model.device
        )
        ref = AutoAttack(
            model, norm="Linf", eps=parse_eps(args.eps), version="standard", seed=0, device=model.device
        )
        ref.square.n_queries = queries
        ref.apgd.n_iter = ref.apgd_targeted.n_iter = ref.fab.n_iter = n_iter
        ref.logger.setLevel(logging.WARNING)
        t = time.perf_counter()
        ref.run_standard_evaluation(x, y, batch_size=args.batch_size)
        t_ref = time.perf_counter() - t
    clean = df[df.metric == "clean_accuracy"].value.iat[0]
    # the final condition (a reduced budget is named .../standard-reduced): not a per-stage or clean row
    robust = df[(df.metric == "robust_accuracy") & final_attack_rows(df.condition)].value.iat[0]
    print(
        f"model {args.model} on {model.device} ({args.dtype}), {len(idx)} images, eps {args.eps}, iterations {n_iter}"
    )
    print(f"  clean accuracy {clean:.3f}, AutoAttack robust accuracy {robust:.3f}")
    print(
        f"  rbvit autoattack   {len(idx) / t_ours:8.2f} img/s ({t_ours:.1f}s, includes clean and per-stage forwards)"
    )
    print(f"  package directly   {len(idx) / t_ref:8.2f} img/s ({t_ref:.1f}s)")
    print(f"  package / ours time = {t_ref / t_ours:.2f}x (target >= 1: not slower)")


if __name__ == "__main__":
    main()
