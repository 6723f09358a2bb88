"""A weight download that cannot happen fails at once, in one line that names the model, the cache folder
that would be used and the variable that moves it (no retry chatter, no cut-off message)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from robustbench_vit.models import hub
from tests.helpers import CIFAR10_TEST, error_lines, needs_cifar

RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]
offline_only = pytest.mark.skipif(
    hub.downloads_possible() or hub.downloads_possible("download.pytorch.org"),
    reason="this machine can download weights",
)


def _eval(model: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # the user did not say offline
    return subprocess.run(
        [*RBVIT, "eval", "-m", model, "-s", "clean", "--data", str(CIFAR10_TEST), "--limit", "10",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env={**full, **env},
    )  # fmt: skip


@needs_cifar
@offline_only
@pytest.mark.parametrize(
    ("model", "var", "folder"),
    [("resnet18", "HF_HOME", "hf/hub"), ("torchvision:resnet18", "TORCH_HOME", "th/hub/checkpoints")],
)
def test_an_unreachable_download_is_one_line_naming_the_cache_and_its_variable(tmp_path, model, var, folder):
    r = _eval(model, {var: str(tmp_path / folder.split("/")[0])}, tmp_path)
    lines = error_lines(r.stderr)
    assert r.returncode == 6, r.stderr[-2000:]
    assert len(lines) == 1 and "Retry" not in r.stderr and "Downloading" not in r.stderr, r.stderr[-2000:]
    line = lines[0]
    assert "resnet18" in line and str(tmp_path / folder) in line and var in line and "--checkpoint" in line
    assert line.rstrip().endswith("FILE")  # whole, never cut mid-word
    assert not (tmp_path / "out" / "runs").exists()


def test_the_hub_client_runs_offline_only_inside_the_block(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "downloads_possible", lambda *a: False)
    before = constants.HF_HUB_OFFLINE
    with hub.offline_unless_reachable() as offline:
        assert offline and constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE == before
    monkeypatch.setattr(hub, "downloads_possible", lambda *a: True)
    with hub.offline_unless_reachable() as offline:
        assert not offline and constants.HF_HUB_OFFLINE == before


def test_a_library_with_its_own_handler_is_not_repeated():
    """rbvit's root handler never prints a record that the library's own handler printed already (the hub
    client's retry warnings appeared twice)."""
    import io
    import logging

    from robustbench_vit.cli.output import configure_logging

    own, root_out = io.StringIO(), io.StringIO()
    lib = logging.getLogger("fakehub.download")
    parent = logging.getLogger("fakehub")
    parent.addHandler(logging.StreamHandler(own))
    plain = logging.getLogger("rbvit_probe")
    saved = list(logging.root.handlers)
    try:
        for h in saved:
            logging.root.removeHandler(h)
        configure_logging(logging.WARNING)
        logging.root.handlers[0].setStream(root_out)  # type: ignore[attr-defined]
        lib.warning("retrying in 1s")
        plain.warning("from rbvit")
    finally:
        for h in list(logging.root.handlers):
            logging.root.removeHandler(h)
        for h in saved:
            logging.root.addHandler(h)
        parent.handlers.clear()
    assert own.getvalue().count("retrying") == 1 and "retrying" not in root_out.getvalue()
    assert "from rbvit" in root_out.getvalue()
