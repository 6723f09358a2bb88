"""Runner behaviour: OOM forward chunking and batch halving, suite parameter coercion, one-file-per-condition resume."""

import pytest
import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.suites import Suite, make_suite
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar


@needs_cifar
def test_cuda_oom_halves_the_batch_and_records_it(monkeypatch, tmp_path, cifar_card):
    from robustbench_vit.engine.runner import evaluate

    calls = []
    original = Suite._run

    def flaky(self, ctx, cond, bs):
        calls.append(bs)
        if bs > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return original(self, ctx, cond, bs)

    monkeypatch.setattr(Suite, "_run", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    df = evaluate(
        str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=40, batch_size=64, out=str(tmp_path)
    )
    assert calls == [64, 32, 16] and (df.batch_size == 16).all() and (df.n == 40).all()


@needs_cifar
def test_an_oom_forward_is_chunked_and_the_draws_stay_those_of_the_requested_batch(monkeypatch, cifar_card):
    """Occlusion masks are drawn once per batch: a forward pass that runs out of memory is retried in
    chunks while the masked batches stay 32 images, so the numbers equal a run that had the memory (halving
    the batch drew other masks). The rows record the requested batch size."""
    from robustbench_vit.engine.runner import evaluate

    kw = dict(data=str(CIFAR10_TEST), limit=40, batch_size=32, out=None, progress=False)
    params = {"fractions": "0.5", "grid": "4", "mask_mode": "batch"}
    plenty = evaluate(str(cifar_card), "occlusion", suite_params=params, **kw)
    sizes = []
    original = Suite.logits

    def scarce(self, ctx, x):
        sizes.append(len(x))
        if len(x) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return original(self, ctx, x)

    monkeypatch.setattr(Suite, "logits", scarce)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    chunked = evaluate(str(cifar_card), "occlusion", suite_params=params, **kw)
    assert max(sizes) == 32 and 16 in sizes and set(sizes[sizes.index(16) + 2 :]) <= {8}
    key = ["condition", "metric"]
    a, b = plenty.sort_values(key), chunked.sort_values(key)
    assert a.condition.tolist() == b.condition.tolist() and (b.batch_size == 32).all()
    assert b.value.to_numpy() == pytest.approx(a.value.to_numpy(), rel=1e-6, abs=1e-7)


def test_suite_parameters_are_coerced_and_checked():
    s = make_suite("occlusion", {"fractions": "0,0.5", "repeats": "3", "offset": "true", "grid": "8"})
    assert s.fractions == (0.0, 0.5) and s.repeats == 3 and s.offset is True and s.grid == "8"
    with pytest.raises(ConfigError, match="has no parameter"):
        make_suite("occlusion", {"fraction": "0.5"})
    with pytest.raises(ConfigError, match="not a valid"):
        make_suite("occlusion", {"repeats": "many"})
    with pytest.raises(ConfigError, match="fill"):
        make_suite("occlusion", {"fill": "purple"})


@needs_cifar
def test_evaluate_accepts_any_module(tmp_path):
    """A notebook's nn.Module: preprocessing from its timm pretrained_cfg or given explicitly; the
    module's tensors identify its weights (a changed module is a new run)."""
    import timm

    import robustbench_vit as rbvit
    from robustbench_vit.errors import ConfigError

    net = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    pre = {
        "input_size": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "crop_pct": 1.0,
        "label_space": "cifar10",
    }
    kw = dict(data=str(CIFAR10_TEST), limit=20, out=str(tmp_path))
    a = rbvit.evaluate(net, "clean", preprocessing=pre, name="my_net", **kw)
    assert set(a.model) == {"my_net"} and a["weights"].iat[0].startswith("module sha256:")
    assert a["input_size"].iat[0] == 32
    with torch.no_grad():
        net.fc.bias.add_(1.0)
    b = rbvit.evaluate(net, "clean", preprocessing=pre, name="my_net", **kw)
    assert a["run_id"].iat[0] != b["run_id"].iat[0]
    imagenet_net = timm.create_model("test_resnet", pretrained=False)
    m = rbvit.evaluate(imagenet_net, "clean", data=str(IMAGENET_SAMPLES), limit=5, out=None)
    assert m["preprocessing_source"].iat[0].startswith("module:") and m["model"].iat[0] == "test_resnet"
    with pytest.raises(ConfigError, match="preprocessing"):
        rbvit.evaluate(torch.nn.Linear(3, 3), "clean", data=str(CIFAR10_TEST), limit=5, out=None)


@needs_cifar
def test_api_writes_no_files_unless_out_is_given(tmp_path, cifar_card, monkeypatch):
    import robustbench_vit as rbvit

    monkeypatch.chdir(tmp_path)
    df = rbvit.evaluate(str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=10, progress=False)
    assert len(df) and not (tmp_path / "results").exists()
    rbvit.evaluate(str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=10, out="mine", progress=False)
    assert list((tmp_path / "mine" / "runs").rglob("*.parquet"))


@needs_cifar
def test_several_suites_in_one_call_share_the_model_and_equal_separate_runs(
    tmp_path, cifar_card, monkeypatch
):
    import robustbench_vit as rbvit
    from robustbench_vit.models import loading

    kw = dict(data=str(CIFAR10_TEST), limit=20, progress=False)
    params = {"fractions": (0.5,), "grids": ("2",)}  # occlusion's and patch_shuffle's own parameters
    loads = []
    real_load = loading.load_model
    monkeypatch.setattr(
        "robustbench_vit.engine.runner.load_model", lambda *a, **k: loads.append(1) or real_load(*a, **k)
    )
    both = rbvit.evaluate(str(cifar_card), ["clean", "occlusion", "patch_shuffle"], suite_params=params, **kw)
    assert len(loads) == 1 and list(dict.fromkeys(both.suite)) == ["clean", "occlusion", "patch_shuffle"]
    occ = rbvit.evaluate(str(cifar_card), "occlusion", suite_params={"fractions": (0.5,)}, **kw)
    shuf = rbvit.evaluate(str(cifar_card), "patch_shuffle,clean", suite_params={"grids": ("2",)}, **kw)
    key = ["suite", "condition", "metric"]
    pd = pytest.importorskip("pandas")
    expect = pd.concat([occ, shuf]).set_index(key)["value"].sort_index()
    got = both.set_index(key)["value"].sort_index()
    pd.testing.assert_series_equal(got, expect)
    with pytest.raises(ConfigError, match="belongs to none of the suites"):
        rbvit.evaluate(str(cifar_card), "clean,occlusion", suite_params={"fractionz": (0.5,)}, **kw)


@needs_cifar
def test_results_folder_reads_with_plain_pandas_and_duckdb(tmp_path, cifar_card):
    """The README's two one-liners: pandas.read_parquet on runs/ and DuckDB with hive partitioning."""
    import pandas as pd

    import robustbench_vit as rbvit

    rbvit.evaluate(
        str(cifar_card),
        "clean,occlusion",
        data=str(CIFAR10_TEST),
        limit=10,
        out=str(tmp_path),
        progress=False,
    )
    df = pd.read_parquet(tmp_path / "runs")
    assert set(df["suite"].astype(str)) == {"clean", "occlusion"} and set(df["model"].astype(str)) == {
        "cifar_vit"
    }
    assert len(df) == len(rbvit.load_results(tmp_path))
    duckdb = pytest.importorskip("duckdb")
    q = f"SELECT suite, count(*) AS n FROM read_parquet('{tmp_path}/runs/**/*.parquet', hive_partitioning=true) GROUP BY suite"
    counts = dict(duckdb.sql(q).fetchall())
    assert counts == df.groupby(df["suite"].astype(str)).size().to_dict()


@needs_cifar
def test_relative_to_clean_pairs_each_condition_once_and_std_needs_two_repeats(tmp_path, cifar_card):
    import robustbench_vit as rbvit
    from robustbench_vit.results.analysis import relative_to_clean

    kw = dict(data=str(CIFAR10_TEST), limit=20, out=str(tmp_path), progress=False)
    for bs in (10, 20):  # two clean runs (two run ids) of the same images: must not double the joined rows
        rbvit.evaluate(str(cifar_card), "clean", batch_size=bs, **kw)
    rbvit.evaluate(str(cifar_card), "occlusion", suite_params={"fractions": (0.25, 0.5), "repeats": 1}, **kw)
    df = rbvit.load_results(tmp_path)
    assert not (df.metric == "top1_std").any()  # undefined with one repeat: not written as 0
    rel = relative_to_clean(df)
    occ = df[(df.suite == "occlusion") & df.metric.isin(["top1", "top1_mean"])]
    assert len(rel) == len(occ) and rel["clean_top1"].notna().all()
    clean_rows = df[(df.suite == "clean") & (df.metric == "top1")]
    assert clean_rows.run_id.nunique() == 2 and clean_rows.value.nunique() == 1
    clean = clean_rows.value.iat[0]
    assert (rel["delta_vs_clean"] == rel["value"] - clean).all()
    assert rel["relative_to_clean"].tolist() == pytest.approx((rel["value"] / clean).tolist())
    rbvit.evaluate(str(cifar_card), "occlusion", suite_params={"fractions": (0.5,), "repeats": 2}, **kw)
    two = rbvit.load_results(tmp_path)
    assert (two.metric == "top1_std").any()


@needs_cifar
def test_devices_split_conditions_over_processes_with_the_rows_of_one_process(tmp_path, cifar_card):
    """``--devices cpu,cpu``: two processes share the conditions; files and values equal a plain run's."""
    import json
    import subprocess
    import sys

    import pandas as pd

    from robustbench_vit.storage.reading import load_results

    base = [
        sys.executable,
        "-m",
        "robustbench_vit.cli.commands",
        "-q",
        "eval",
        "-m",
        str(cifar_card),
        "-s",
        "occlusion",
    ]
    base += [
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "20",
        "-p",
        "fractions=0,0.25,0.5,0.75",
        "-p",
        "repeats=2",
    ]
    from click.testing import CliRunner

    from robustbench_vit.cli.commands import main

    one = CliRunner().invoke(main, [*base[3:], "--out", str(tmp_path / "one")])  # the plain run, in-process
    two = subprocess.run(
        [*base, "--out", str(tmp_path / "two"), "--devices", "cpu,cpu", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.exit_code == 0 and two.returncode == 0, (one.output[-2000:], two.stderr[-2000:])
    key = ["suite", "condition", "metric"]
    a, b = load_results(tmp_path / "one"), load_results(tmp_path / "two")

    def config(
        df,
    ):  # what shaped the numbers: the config without the folder and device named on the command line
        out = {
            json.dumps({**json.loads(c), "options": {**json.loads(c)["options"], "out": 0, "device": 0}})
            for c in df.config
        }
        return out

    assert not b.duplicated(key).any() and config(a) == config(b) and len(config(a)) == 1
    pd.testing.assert_series_equal(
        a.set_index(key)["value"].sort_index(), b.set_index(key)["value"].sort_index()
    )
    names = sorted(p.name for p in (tmp_path / "two" / "runs").rglob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "one" / "runs").rglob("*.parquet"))
    assert len(two.stdout.splitlines()) == len(a)  # the parent prints every row once


def test_devices_are_checked_before_any_process_starts(tmp_path):
    import robustbench_vit as rbvit

    with pytest.raises(ConfigError, match="--device 'tpu:0' is not a device|not supported"):
        rbvit.evaluate("timm:test_vit", "clean", devices=("cpu", "tpu:0"), out=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="needs a results folder"):
        rbvit.evaluate("timm:test_vit", "clean", devices=("cpu", "cpu"), progress=False)


def test_rows_record_the_gpu_and_its_float32_settings(monkeypatch):
    """fp32 convolutions on a CUDA GPU run as TF32 under PyTorch's default: the row's config says so,
    with the GPU's name; off CUDA the entry is null."""
    from robustbench_vit.engine.rows import accelerator

    assert accelerator(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: (9, 0))
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:  # cuBLAS's flag is not a plain attribute, so monkeypatch could not undo it
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        got = accelerator(torch.device("cuda", 0))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert got["name"] == "NVIDIA H200" and got["capability"] == "9.0"
    assert got["cudnn_tf32"] is True and got["matmul_tf32"] is False


@needs_cifar
def test_cpu_rows_have_a_null_accelerator(cifar_card):
    import json

    from robustbench_vit.engine.runner import evaluate

    df = evaluate(str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=8, out=None, progress=False)
    assert all(json.loads(c)["accelerator"] is None for c in df.config)


@needs_cifar
def test_one_clean_pass_per_call_whatever_suites_ask_for_it(tmp_path, cifar_card):
    """clean, occlusion at fraction 0 and a 1x1 shuffle are the same pass over the same images: a three-suite
    call computes it once, and its numbers equal the ones each suite computes alone."""
    import robustbench_vit as rbvit
    from robustbench_vit.models.loading import load_model

    model = load_model(str(cifar_card), device="cpu")
    seen = []
    model.module.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    kw = dict(data=str(CIFAR10_TEST), limit=40, batch_size=40, cache_dir=str(tmp_path))
    suites = ["clean", "occlusion", "patch_shuffle"]
    params = {"fractions": "0,0.5", "grids": "1,2"}
    df = rbvit.evaluate(model, suites, suite_params=params, **kw)
    top1 = df[df.metric == "top1"].set_index("condition").value
    assert top1["clean"] == top1["random/fraction=0.00/repeat=0"] == top1["grid=1x1/repeat=0"]
    forwards = sum(n for n in seen if n > 1)  # one-image forwards: each suite's output-width check
    assert forwards == 3 * 40, forwards  # clean once, occlusion 0.5, shuffle 2x2 (not 5 passes)
    alone = rbvit.evaluate(model, "occlusion", suite_params={"fractions": "0"}, **kw)
    assert alone[alone.metric == "top1"].value.iat[0] == top1["clean"]


@needs_cifar
def test_seeds_of_a_limited_run_share_its_images_and_the_board_averages_them(tmp_path, cifar_card):
    """``--limit`` draws its images with a fixed seed: runs of seeds 0 and 1 evaluate the same images (only
    the occlusion masks differ), so the board shows the mean of two seeds; a subset drawn per seed made
    each seed an image set of its own and the board showed one of them."""
    from robustbench_vit.data.subset import LIMIT_SEED, stratified_limit
    from robustbench_vit.engine.runner import evaluate
    from robustbench_vit.results.leaderboard import build_leaderboard
    from robustbench_vit.storage.reading import load_samples

    kw = dict(data=str(CIFAR10_TEST), limit=30, out=str(tmp_path), save_samples=True, progress=False)
    params = {"fractions": (0.5,), "grid": "pixel"}
    runs = [evaluate(str(cifar_card), "occlusion", suite_params=params, seed=s, **kw) for s in (0, 1)]
    assert runs[0].image_set.iloc[0] == runs[1].image_set.iloc[0]
    s = load_samples(tmp_path)
    items = [sorted(set(s[s.run_id == r.run_id.iloc[0]].item)) for r in runs]
    assert items[0] == items[1] and len(items[0]) == 30
    from robustbench_vit.data.datasets import image_folder

    ds = image_folder(CIFAR10_TEST)
    assert items[0] == sorted(ds.items[i] for i in stratified_limit(ds.targets, 30, LIMIT_SEED))
    board = build_leaderboard(tmp_path)
    row = board[(board.metric == "top1") & board.condition.str.contains("fraction=0.50")].iloc[0]
    assert row.n_seeds == 2 and row.seeds == "0,1" and row.image_sets_available == 1
