"""Shared fixtures: an isolated image cache, CIFAR-10 model cards (paths and markers: tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import write_cifar_card

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest -n N: split the cores between the workers (and the processes they start), so N workers do
    # not each run a full-width thread pool on the same cores
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ["OMP_NUM_THREADS"] = _threads
    import torch

    torch.set_num_threads(int(_threads))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session decodes into its own cache, never the user's ~/.cache."""
    os.environ["RBVIT_CACHE"] = str(tmp_path_factory.mktemp("rbvit-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def cifar_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_card(tmp_path_factory.mktemp("card"))


@pytest.fixture(scope="session")
def cifar_cnn_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_card(tmp_path_factory.mktemp("cnncard"), arch="resnet10t")
