"""Per-image rows name the image a model saw (its file and the SHA-256 of its content), and per-image
readers pair images by that, never by the position of an image in two image lists."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_imagenet


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_images(files: list[Path], root: Path) -> Path:
    for f in files:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, root / f.parent.name / f.name)
    return root


def _assert_rows_name_what_was_read(rows, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """Every row's item is a file of ``folder``, its digest that file's, its label that file's class."""
    assert len(rows)
    for r in rows.itertuples():
        f = folder / r.item
        assert f.is_file(), f"{r.condition}: {r.item} is not a file of {folder}"
        assert r.image_sha256 == _sha(f)


@needs_imagenet
def test_an_imagenet_c_cell_lacking_files_names_its_own_images(tmp_path):
    """A cell that lacks some of the run's files evaluates a stratified subset of its own files; its
    per-image rows name those files, not the run's files at the same positions."""
    import robustbench_vit as rbvit
    from robustbench_vit.storage.reading import load_samples

    files = sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[::100][:8]
    root = tmp_path / "imagenet-c"
    _copy_images(files, root / "brightness" / "1")
    _copy_images(files[1:] + sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[1:2], root / "gaussian_noise" / "1")
    rbvit.evaluate(
        "timm:test_resnet",
        "imagenet_c",
        data=str(root),
        out=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        pretrained=False,
        progress=False,
        save_samples=True,
        batch_size=4,
    )
    s = load_samples(tmp_path / "out")
    assert set(s.condition) == {"brightness/1", "gaussian_noise/1"}
    for cond in ("brightness/1", "gaussian_noise/1"):
        _assert_rows_name_what_was_read(s[s.condition == cond], root / cond)
    extra = sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[1]
    assert f"{extra.parent.name}/{extra.name}" in set(s[s.condition == "gaussian_noise/1"].item)


@needs_imagenet
def test_a_clean_counterpart_names_the_clean_images(tmp_path):
    """ImageNet-A's ``clean-200`` condition reads the clean folder (more images than the A folder): its rows
    name clean files; they used to be looked up in the A folder's list (an IndexError, or wrong names)."""
    import robustbench_vit as rbvit
    from robustbench_vit.data.registry import subset_synsets
    from robustbench_vit.storage.reading import load_samples

    wnids = subset_synsets("imagenet-a")[0][:3]
    a = _copy_images([next((IMAGENET_SAMPLES / w).iterdir()) for w in wnids], tmp_path / "a")
    rbvit.evaluate(
        "timm:test_vit",
        "imagenet_a",
        data=str(a),
        dataset="imagenet-a",
        suite_params={"clean_data": str(IMAGENET_SAMPLES), "clean_limit": 12},
        out=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        pretrained=False,
        progress=False,
        save_samples=True,
    )
    s = load_samples(tmp_path / "out")
    clean = s[s.condition == "clean-200"]
    assert len(clean) == 12 and len(s[s.condition == "imagenet-a"]) == 3
    _assert_rows_name_what_was_read(clean, IMAGENET_SAMPLES)
    _assert_rows_name_what_was_read(s[s.condition == "imagenet-a"], a)


@needs_cifar
def test_compare_pairs_the_same_images_not_the_same_positions(tmp_path, cifar_card, cifar_cnn_card):
    """Two models evaluated on two copies of a folder: one copy lacks a file (every later position
    shifts) and has another replaced in place. The paired test counts only images with the same name and
    content in both runs, and its counts equal a restatement joined on the files' own digests."""
    import robustbench_vit as rbvit
    from robustbench_vit.results.analysis import mcnemar
    from robustbench_vit.storage.reading import load_samples

    files = [f for c in sorted(CIFAR10_TEST.iterdir()) for f in sorted(c.iterdir())[:4]]
    first = _copy_images(files, tmp_path / "first" / "cifar")
    second = _copy_images(files, tmp_path / "second" / "cifar")
    (second / files[1].parent.name / files[1].name).unlink()  # every later position shifts by one
    replaced = second / files[9].parent.name / files[9].name
    replaced.write_bytes(files[10].read_bytes())  # same name, other content
    out = tmp_path / "out"
    kw = dict(out=str(out), cache_dir=str(tmp_path / "cache"), progress=False, save_samples=True)
    run_a = rbvit.evaluate(str(cifar_card), "clean", data=str(first), **kw).run_id.iloc[0]
    run_b = rbvit.evaluate(str(cifar_cnn_card), "clean", data=str(second), **kw).run_id.iloc[0]

    s = load_samples(out)
    rows = {}  # per run: (file name, digest of the file as it is now) -> correct
    for run, folder in ((run_a, first), (run_b, second)):
        rows[run] = {
            (r.item, _sha(folder / r.item)): bool(r.correct) for r in s[s.run_id == run].itertuples()
        }
        assert len(rows[run]) == len(s[s.run_id == run])
    a, b = rows[run_a], rows[run_b]
    shared = sorted(set(a) & set(b))
    assert len(shared) == len(files) - 2  # the removed file and the replaced one are not shared
    test = mcnemar(out, str(cifar_card), str(cifar_cnn_card))
    assert test.n == len(shared) and test.content_differs == 1  # the replaced file
    assert test.a_only == sum(a[k] and not b[k] for k in shared)
    assert test.b_only == sum(b[k] and not a[k] for k in shared)
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    printed = CliRunner().invoke(main, ["compare", str(cifar_card), str(cifar_cnn_card), "-r", str(out)])
    assert printed.exit_code == 0, printed.output
    assert f"on {len(shared)} shared images" in printed.output
    assert "left out: 1 images named alike whose content or label differs" in printed.output


@needs_cifar
def test_worst_case_never_joins_two_contents_of_one_file(tmp_path):
    """PGD and AutoAttack run on a folder whose file is replaced between them: that file is two images,
    neither evaluated by both attacks, so the worst case is taken over the other images only."""
    import robustbench_vit as rbvit
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.results.worst_case import worst_case
    from tests.smooth_classifier import PRE, Smooth

    files = [f for c in sorted(CIFAR10_TEST.iterdir()) for f in sorted(c.iterdir())[:2]]
    data = _copy_images(files, tmp_path / "cifar")
    model = wrap_module(Smooth(), preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    kw = dict(data=str(data), progress=False, out=str(tmp_path / "out"), save_samples=True)
    kw["cache_dir"] = str(tmp_path / "cache")
    rbvit.evaluate(model, "pgd", suite_params={"epsilons": ("2/255",), "steps": 2}, **kw)
    target = data / files[0].parent.name / files[0].name
    target.write_bytes(files[5].read_bytes())
    aa = {"eps": "2/255", "aa_version": "custom", "attacks": ("apgd-ce",), "n_iter": 5}
    rbvit.evaluate(model, "autoattack", suite_params=aa, **kw)
    summary, per_image = worst_case(tmp_path / "out", "smooth")
    row = summary.iloc[0]
    assert row.attacks == 2 and row.n_images == len(files) - 1
    assert f"{files[0].parent.name}/{files[0].name}" not in set(per_image.item)
    assert per_image.image_sha256.map(len).eq(64).all()


def test_per_image_files_written_before_image_sha256_still_read_verified(tmp_path):
    """A file of an older rbvit lacks the ``image_sha256`` column: it is verified against the columns it was
    written with (then read with the column as nulls), never refused as damaged; an edited value in such a
    file is still refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from robustbench_vit.storage.store import SAMPLE_SCHEMA
    from robustbench_vit.storage.verified_parquet import UnverifiedFile, atomic_write_table, read_verified

    older = pa.schema([f for f in SAMPLE_SCHEMA if f.name not in ("image_sha256", "label_class")])
    row = {"run_id": "r", "model": "m", "suite": "clean", "dataset": "d", "condition": "clean"}
    row |= {
        "source_model": None,
        "index": 0,
        "item": "a/0.png",
        "label": 1,
        "pred": 1,
        "correct": True,
        "loss": 0.5,
    }
    path = tmp_path / "old.parquet"
    atomic_write_table(pa.Table.from_pylist([row], schema=older), path, kind="samples")
    read = read_verified(path, SAMPLE_SCHEMA)
    assert read.schema == SAMPLE_SCHEMA and read.to_pylist() == [
        {**row, "image_sha256": None, "label_class": None}
    ]
    edited = pq.read_table(path)
    pq.write_table(edited.set_column(edited.column_names.index("pred"), "pred", pa.array([7])), path)
    with pytest.raises(UnverifiedFile):
        read_verified(path, SAMPLE_SCHEMA)


@needs_cifar
def test_compare_pairs_transfer_rows_source_with_source(tmp_path, cifar_card, cifar_cnn_card):
    """Transfer conditions are named by attack and eps, not by source: with two sources, model A's latest
    run was of one source and model B's of the other, and compare paired A-under-one with B-under-the-other.
    Rows now pair source with source, restated here from the per-image rows themselves."""
    import robustbench_vit as rbvit
    from robustbench_vit.results.analysis import mcnemar
    from robustbench_vit.storage.reading import load_samples

    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=20, out=str(out), save_samples=True, progress=False)
    kw["cache_dir"] = str(tmp_path / "cache")
    for target, sources in ((cifar_card, (cifar_card, cifar_cnn_card)), (cifar_cnn_card, (cifar_card,))):
        for source in sources:
            params = {"source": str(source), "attack": "fgsm"}
            rbvit.evaluate(str(target), "transfer", suite_params=params, **kw)
    s = load_samples(out)
    s = s[~s.condition.str.endswith("/clean")]
    cond = s.condition.iloc[0]
    a = s[(s.model == "cifar_vit") & (s.source_model == "cifar_vit")].set_index("item").correct
    b = s[(s.model == "cifar_resnet10t") & (s.source_model == "cifar_vit")].set_index("item").correct
    assert len(a) == len(b) == 20
    test = mcnemar(out, str(cifar_card), str(cifar_cnn_card), suite="transfer", condition=cond)
    assert test.n == 20  # only source cifar_vit was run on both targets
    assert (test.a_only, test.b_only) == (int((a & ~b[a.index]).sum()), int((~a & b[a.index]).sum()))


def _flat_with_labels(files: list[Path], root: Path) -> Path:
    """``files`` copied into one flat folder, with a labels file naming each file's class folder."""
    root.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, root / f"{f.parent.name}_{f.name}")
    labels = root.parent / "labels.txt"
    labels.write_text("".join(f"{f.parent.name}_{f.name} {f.parent.name}\n" for f in files))
    return labels


def _swap_two_labels(labels: Path, i: int, j: int) -> None:
    lines = [line.split() for line in labels.read_text().splitlines()]
    lines[i][1], lines[j][1] = lines[j][1], lines[i][1]
    labels.write_text("".join(f"{a} {b}\n" for a, b in lines))


@needs_cifar
def test_compare_never_pairs_one_image_graded_against_two_labels(tmp_path, cifar_card, cifar_cnn_card):
    """A flat folder's labels file is edited between two models' runs (two lines swap their classes): the
    two relabelled images were graded against other truths and are left out of the paired test, which
    used to pair them by name and content alone."""
    import robustbench_vit as rbvit
    from robustbench_vit.results.analysis import mcnemar
    from robustbench_vit.storage.reading import load_samples

    files = [f for c in sorted(CIFAR10_TEST.iterdir()) for f in sorted(c.iterdir())[:2]]
    labels = _flat_with_labels(files, tmp_path / "flat")
    out = tmp_path / "out"
    kw = dict(data=str(tmp_path / "flat"), out=str(out), cache_dir=str(tmp_path / "cache"), progress=False)
    rbvit.evaluate(str(cifar_card), "clean", labels=str(labels), save_samples=True, **kw)
    _swap_two_labels(labels, 0, 5)
    rbvit.evaluate(str(cifar_cnn_card), "clean", labels=str(labels), save_samples=True, **kw)

    s = load_samples(out)
    a, b = (s[s.model == m].set_index("item") for m in ("cifar_vit", "cifar_resnet10t"))
    assert (a.label != b.label[a.index]).sum() == 2
    same = a.index[a.label == b.label[a.index]]
    test = mcnemar(out, str(cifar_card), str(cifar_cnn_card))
    assert (test.n, test.content_differs) == (len(files) - 2, 2)
    ca, cb = a.correct[same], b.correct[same]
    assert (test.a_only, test.b_only) == (int((ca & ~cb).sum()), int((~ca & cb).sum()))
    assert test.acc_a == pytest.approx(ca.mean()) and test.acc_b == pytest.approx(cb.mean())


@needs_cifar
def test_worst_case_never_joins_one_image_graded_against_two_labels(tmp_path):
    """PGD and AutoAttack run on a flat folder whose labels file is edited between them: the relabelled
    images are two images each, neither evaluated by both attacks against one label."""
    import robustbench_vit as rbvit
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.results.worst_case import worst_case
    from tests.smooth_classifier import PRE, Smooth

    files = [f for c in sorted(CIFAR10_TEST.iterdir()) for f in sorted(c.iterdir())[:2]]
    labels = _flat_with_labels(files, tmp_path / "flat")
    model = wrap_module(Smooth(), preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    kw = dict(data=str(tmp_path / "flat"), labels=str(labels), progress=False, save_samples=True)
    kw |= dict(out=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    rbvit.evaluate(model, "pgd", suite_params={"epsilons": ("2/255",), "steps": 2}, **kw)
    _swap_two_labels(labels, 0, 5)
    aa = {"eps": "2/255", "aa_version": "custom", "attacks": ("apgd-ce",), "n_iter": 5}
    rbvit.evaluate(model, "autoattack", suite_params=aa, **kw)
    summary, per_image = worst_case(tmp_path / "out", "smooth")
    assert summary.iloc[0].attacks == 2 and summary.iloc[0].n_images == len(files) - 2
    relabelled = {f"{f.parent.name}_{f.name}" for f in (files[0], files[5])}
    assert not relabelled & set(per_image.item)
    assert per_image.groupby("item").size().eq(1).all()


@needs_cifar
def test_compare_refuses_to_pair_two_models_attacked_otherwise(tmp_path, cifar_card, cifar_cnn_card):
    """PGD's step count is not in its condition's name: one model attacked with 1 step and the other with 3
    under the same ``linf/eps=...`` were paired as if one attack, and the test credited the attack's
    weakness to a model. Such runs are refused, naming the setting; run alike, they pair, whatever other
    epsilons either run chose."""
    import robustbench_vit as rbvit
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.results.analysis import mcnemar

    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(out), save_samples=True, progress=False)
    kw["cache_dir"] = str(tmp_path / "cache")
    for card, steps in ((cifar_card, 1), (cifar_cnn_card, 3)):
        rbvit.evaluate(str(card), "pgd", suite_params={"epsilons": ("2/255",), "steps": steps}, **kw)
    with pytest.raises(
        ConfigError, match=r"condition linf/eps=2/255 with other settings \(.*steps: 1 vs 3\)"
    ):
        mcnemar(out, str(cifar_card), str(cifar_cnn_card), suite="pgd")
    both = {"epsilons": ("2/255", "1/255"), "steps": 3}
    rbvit.evaluate(str(cifar_card), "pgd", suite_params=both, **kw)
    test = mcnemar(out, str(cifar_card), str(cifar_cnn_card), suite="pgd", condition="linf/eps=2/255")
    assert test.n == 10


@needs_cifar
def test_compare_pairs_models_whose_label_spaces_order_the_classes_otherwise(tmp_path, cifar_card):
    """A row's ``label`` indexes its own model's label space: one card lists CIFAR-10's classes in reverse,
    so one image has label 3 for one model and 6 for the other. Both were graded against the same class,
    and the paired test pairs every image, with the counts of a restatement joined on file names."""
    import robustbench_vit as rbvit
    from robustbench_vit.data.labels import CIFAR10_CLASSES
    from robustbench_vit.results.analysis import mcnemar
    from robustbench_vit.storage.reading import load_samples
    from tests.helpers import write_cifar_card

    reverse = write_cifar_card(
        tmp_path / "reverse", arch="resnet10t", label_space=list(reversed(CIFAR10_CLASSES)), name="rev"
    )
    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=20, out=str(out), save_samples=True, progress=False)
    kw["cache_dir"] = str(tmp_path / "cache")
    for card in (cifar_card, reverse):
        rbvit.evaluate(str(card), "clean", **kw)
    s = load_samples(out)
    a, b = (s[s.model == m].set_index("item") for m in ("cifar_vit", "rev"))
    assert (a.label + b.label[a.index] == 9).all()  # the same class, at mirrored indices
    test = mcnemar(out, str(cifar_card), str(reverse))
    assert (test.n, test.content_differs) == (20, 0)
    ca, cb = a.correct, b.correct[a.index]
    assert (test.a_only, test.b_only) == (int((ca & ~cb).sum()), int((~ca & cb).sum()))


@needs_cifar
def test_worst_case_never_combines_attacks_on_two_weights_of_one_name(tmp_path):
    """PGD runs on a model, its weights change under the same name (a card's file overwritten), then
    AutoAttack runs: the worst case combined PGD on the old network with AutoAttack on the new one as one
    model's. Each weights is its own row now, each attacked once."""
    import robustbench_vit as rbvit
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.results.worst_case import worst_case
    from tests.smooth_classifier import PRE, Smooth

    kw = dict(data=str(CIFAR10_TEST), limit=20, progress=False, out=str(tmp_path / "out"), save_samples=True)
    kw["cache_dir"] = str(tmp_path / "cache")
    net = Smooth()
    model = wrap_module(net, preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    pgd = rbvit.evaluate(model, "pgd", suite_params={"epsilons": ("2/255",), "steps": 2}, **kw)
    with torch.no_grad():
        net.fc.weight.mul_(-1.0)
    changed = wrap_module(net, preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    aa = {"eps": "2/255", "aa_version": "custom", "attacks": ("apgd-ce",), "n_iter": 5}
    auto = rbvit.evaluate(changed, "autoattack", suite_params=aa, **kw)
    summary, per_image = worst_case(tmp_path / "out", "smooth")
    assert sorted(summary.weights) == sorted({pgd.weights.iloc[0], auto.weights.iloc[0]})
    assert (summary.attacks == 1).all() and (summary.n_images == 20).all()
    assert per_image.groupby("weights").size().eq(20).all()


@needs_cifar
def test_compare_never_pools_two_weights_of_one_model_name(tmp_path, cifar_card):
    """Model A's weights change under its name between two PGD runs of different epsilons; pooled over
    conditions, the test mixed the old network's outcomes with the new one's. Only the network seen last
    takes part (with a warning), so only its condition pairs."""
    import robustbench_vit as rbvit
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.results.analysis import mcnemar
    from tests.smooth_classifier import PRE, Smooth

    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(out), save_samples=True, progress=False)
    kw["cache_dir"] = str(tmp_path / "cache")
    net = Smooth()
    a = dict(preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    rbvit.evaluate(wrap_module(net, **a), "pgd", suite_params={"epsilons": ("1/255",), "steps": 2}, **kw)
    with torch.no_grad():
        net.fc.weight.mul_(-1.0)
    rbvit.evaluate(wrap_module(net, **a), "pgd", suite_params={"epsilons": ("2/255",), "steps": 2}, **kw)
    rbvit.evaluate(str(cifar_card), "pgd", suite_params={"epsilons": ("1/255", "2/255"), "steps": 2}, **kw)
    test = mcnemar(out, "smooth", str(cifar_card), suite="pgd")
    # linf/eps=2/255 and its clean variant, of the changed network only (was 40 pairs): 10 images
    assert (test.pairs, test.n) == (20, 10)
    assert [c.condition for c in test.conditions] == ["linf/eps=2/255", "linf/eps=2/255/clean"]
