"""Shared fixtures: an isolated image cache, CIFAR-10 model cards (paths and markers: tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import write_cifar_card
from tests.identity_world import make_world, trust_young_files

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest -n N: split the cores between the workers (and the processes they start), so N workers do
    # not each run a full-width thread pool on the same cores
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ["OMP_NUM_THREADS"] = _threads
    import torch

    torch.set_num_threads(int(_threads))

# as the rbvit command does in its own process: CPU forward passes keep their large buffers between batches
# (about 1.4x faster here; robustbench_vit/cpu_allocator.py). Numbers never depend on it.
from robustbench_vit.cpu_allocator import keep_cpu_buffers  # noqa: E402

keep_cpu_buffers()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session decodes into its own cache, never the user's ~/.cache."""
    os.environ["RBVIT_CACHE"] = str(tmp_path_factory.mktemp("rbvit-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _checkout_files() -> set[str]:
    """Files under the checkout's results/ and tests/ (what a test could write by mistake)."""
    root = Path(__file__).resolve().parents[1]
    return {
        str(p.relative_to(root))
        for d in ("results", "tests")
        for p in (root / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean():
    """Tests never write inside the checkout: every file a test session leaves under results/ or tests/ is
    an error (a run without --out writes to ./results, which the committed leaderboard would then read)."""
    before = _checkout_files()
    yield
    new = sorted(_checkout_files() - before)
    assert not new, f"tests wrote inside the checkout: {new[:5]}"


@pytest.fixture(scope="session")
def cifar_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_card(tmp_path_factory.mktemp("card"))


@pytest.fixture(scope="session")
def cifar_cnn_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_card(tmp_path_factory.mktemp("cnncard"), arch="resnet10t")


@pytest.fixture()
def identity_world(tmp_path: Path) -> dict:
    """The card, class-folder and flat datasets the identity tests change one part of (tests/identity_world.py)."""
    return make_world(tmp_path)


@pytest.fixture()
def young_files_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the stat tuples of files a test has just written (no racy-file re-hash)."""
    trust_young_files(monkeypatch)
