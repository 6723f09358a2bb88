"""A suite's stored artifacts (transfer's crafted adversarials, the saliency maps, AutoAttack's per-batch
outcomes) are keyed by the suite's version, as its runs are: a fix of the code that computes them, which
bumps the version, computes them again instead of reading back what the old code stored.

Each test stores the artifacts, then "fixes" their code (a patch that changes what it computes) and bumps
the version, and compares a rerun on the same cache with a from-scratch run of the fixed code. Before the
version took part in these keys, the rerun got a new run id (the rows were recomputed) but read the old
artifacts back: the old code's adversarials and maps, in rows that said the new version."""

from __future__ import annotations

import pytest

from robustbench_vit.engine.runner import evaluate
from tests.helpers import CIFAR10_TEST, instrument, needs_cifar, write_cifar_card
from tests.identity_world import run_suite

#: files written by a test are seconds young: trust their stat tuples (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("young_files_trusted")


def _fix_transfer(monkeypatch, bump: bool = True) -> list:
    """Crafted adversarials stored mirrored: another image for every stored row. Returns the calls."""
    from robustbench_vit.suites import transfer

    real, calls = transfer.encode_adversarial, []
    monkeypatch.setattr(transfer, "encode_adversarial", lambda adv: calls.append(1) or real(adv.flip(-1)))
    if bump:
        monkeypatch.setattr(transfer.Transfer, "version", transfer.Transfer.version + 1)
    return calls


def _fix_saliency(monkeypatch, bump: bool = True) -> list:
    """Saliency maps mirrored: other cells are salient. Returns the calls."""
    from robustbench_vit.suites import occlusion, saliency

    real, calls = saliency.cls_attention, []
    monkeypatch.setattr(
        saliency, "cls_attention", lambda m, x, head: calls.append(1) or real(m, x, head=head).flip(-1)
    )
    if bump:
        monkeypatch.setattr(occlusion.Occlusion, "version", occlusion.Occlusion.version + 1)
    return calls


@needs_cifar
@pytest.mark.parametrize(
    "suite, params, fix",
    [
        ("transfer", lambda card: {"source": str(card), "attack": "fgsm"}, _fix_transfer),
        (
            "occlusion",
            lambda card: {"modes": ("salient",), "saliency_model": str(card), "grid": "8"},
            _fix_saliency,
        ),
    ],
)
@pytest.mark.parametrize("bump", [True, False], ids=["version-bumped", "replaced-in-memory-only"])
def test_a_version_bump_recomputes_what_the_suite_stored(
    identity_world, suite, params, fix, bump, monkeypatch
):
    """Bumped, or only replaced in memory (a notebook's patch, keyed by ``Suite.code_key``): before the
    replacement keyed the stores, the rerun got a new run id yet read the old code's artifacts back."""
    target = write_cifar_card(identity_world["root"] / "target", arch="resnet10t", seed=2)
    p = params(identity_world["card"])
    before = run_suite(identity_world, target, suite, p, "run")
    calls = fix(monkeypatch, bump)
    after = run_suite(identity_world, target, suite, p, "run")
    assert calls  # computed again by the fixed code, not read back
    assert after == run_suite(identity_world, target, suite, p, "truth")
    if suite == "occlusion":  # other cells dropped (a random target's transfer numbers may not move)
        assert after != before


@needs_cifar
def test_a_version_bump_attacks_again_instead_of_reading_stored_outcomes(tmp_path, monkeypatch):
    pytest.importorskip("pyautoattack")
    from robustbench_vit.suites import autoattack as suite_module
    from tests.smooth_classifier import Smooth
    from tests.smooth_classifier import run_autoattack as run

    params = dict(eps="2/255", aa_version="custom", attacks=("apgd-ce",), limit=40, batch_size=20)
    run(Smooth(), out=str(tmp_path / "a"), cache_dir=str(tmp_path / "c"), **params)
    real, calls = suite_module.run_stages, []
    instrument(monkeypatch, suite_module, "run_stages", lambda *a, **k: calls.append(1) or real(*a, **k))
    run(Smooth(), out=str(tmp_path / "b"), cache_dir=str(tmp_path / "c"), **params)
    assert calls == []  # the same code: a fresh --out reads the stored outcomes
    monkeypatch.setattr(suite_module.AutoAttackSuite, "version", suite_module.AutoAttackSuite.version + 1)
    run(Smooth(), out=str(tmp_path / "c-out"), cache_dir=str(tmp_path / "c"), **params)
    assert len(calls) == 2  # both batches attacked again


@needs_cifar
@pytest.mark.parametrize("attack, recrafted", [("dim", True), ("fgsm", False)])
def test_adversarials_with_per_batch_draws_are_keyed_by_the_batch(
    identity_world, monkeypatch, attack, recrafted
):
    """Input diversity (DIM) draws its resizes per batch: another --batch-size crafts other adversarials,
    so they are crafted again (equal to a from-scratch run at that size); FGSM's do not depend on the batch
    and are reused."""
    from robustbench_vit.suites import transfer

    root = identity_world["root"]
    target = write_cifar_card(root / "target", arch="resnet10t", seed=2)

    def run_suite(out, cache, batch_size):  # type: ignore[no-untyped-def]
        df = evaluate(
            str(target),
            "transfer",
            suite_params={"source": str(identity_world["card"]), "attack": attack, "steps": "2"},
            data=str(identity_world["data"]),
            out=str(out),
            cache_dir=str(cache),
            batch_size=batch_size,
            progress=False,
        )
        return df.set_index(["condition", "metric"]).value.fillna(-1).sort_index().to_dict()

    run_suite(root / "out", root / "cache", 16)
    real, calls = transfer.encode_adversarial, []
    instrument(monkeypatch, transfer, "encode_adversarial", lambda adv: calls.append(1) or real(adv))
    again = run_suite(root / "out-8", root / "cache", 8)
    assert bool(calls) == recrafted
    assert again == run_suite(root / "truth-out", root / "truth-cache", 8)


def _stored_adversarials(cache) -> dict[str, bytes]:
    """Each transfer store's filled rows (the crafted pixels), by store folder name."""
    import numpy as np

    out = {}
    for d in sorted(cache.glob("*/adv-*")):
        filled = np.load(d / "filled.npy").astype(bool)
        out[d.name] = np.load(d / "images.npy", mmap_mode="r")[filled].tobytes()
    return out


@needs_cifar
def test_transfer_adversarials_crafted_at_bf16_are_never_read_by_an_fp32_run(tmp_path, monkeypatch):
    """The source crafts at the run's precision: an fp32 run on a cache a bf16 run filled crafts its own
    adversarials (equal to a fresh cache's), instead of evaluating the bf16 gradients' pixels."""
    from robustbench_vit.suites import transfer

    target = str(write_cifar_card(tmp_path / "target", seed=1))
    source = str(write_cifar_card(tmp_path / "source", arch="resnet18", seed=2))

    def run(dtype: str, cache: str) -> None:
        params = {"source": source, "attack": "pgd", "steps": 3, "population": "all"}
        data = str(CIFAR10_TEST)
        evaluate(
            target,
            "transfer",
            data=data,
            limit=40,
            dtype=dtype,
            cache_dir=cache,
            suite_params=params,
            progress=False,
        )

    run("bf16", str(tmp_path / "shared"))
    bf16 = _stored_adversarials(tmp_path / "shared")
    real, calls = transfer.encode_adversarial, []
    instrument(monkeypatch, transfer, "encode_adversarial", lambda adv: calls.append(1) or real(adv))
    run("fp32", str(tmp_path / "shared"))
    assert calls  # crafted again at fp32, not read back
    run("fp32", str(tmp_path / "fresh"))
    (fresh,) = _stored_adversarials(tmp_path / "fresh").items()
    shared = _stored_adversarials(tmp_path / "shared")
    assert shared[fresh[0]] == fresh[1]
    assert list(bf16.values()) != [fresh[1]]  # the precisions craft other pixels: the test can fail
