"""A randomized model's numbers are a function of the run's seed, never of the caller's RNG state.

The probe: a randomized defence (Gaussian noise on its input, drawn from torch's global RNG, as randomized
smoothing's base classifier and RobustBench's randomized entries draw theirs) evaluated twice in a notebook:
nll 7.0914 after ``torch.manual_seed(100)``, 7.1016 after ``torch.manual_seed(101)``, and a condition
resumed after a kill was drawn otherwise than the same condition run through. The global RNG is now seeded
per batch from (run seed, first index) while the batch is out, and the caller's state is put back.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import robustbench_vit as rbvit
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_imagenet, write_cifar_card

PRE = dict(img_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0, interpolation="bilinear")


class NoisyInput(nn.Module):
    """Input noise from the global RNG, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 1000)
        with torch.no_grad():
            self.fc.weight.copy_(
                torch.randn(self.fc.weight.shape, generator=torch.Generator().manual_seed(0))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x + 0.25 * torch.randn_like(x)).flatten(1))


@needs_imagenet
def test_a_randomized_models_numbers_follow_the_run_seed_not_the_callers_rng(tmp_path):
    model = NoisyInput()
    kw = dict(data=str(IMAGENET_SAMPLES), limit=16, progress=False, preprocessing=PRE, name="noisy",
              cache_dir=str(tmp_path / "c"), suite_params={"fractions": (0.0, 0.5)})  # fmt: skip
    values = []
    for caller_seed in (100, 101):
        torch.manual_seed(caller_seed)  # whatever the notebook drew before
        state = torch.get_rng_state()
        values.append(rbvit.evaluate(model, "occlusion", **kw).set_index(["condition", "metric"]).value)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left where it was
    assert values[0].equals(values[1])
    alone = rbvit.evaluate(model, "occlusion", **{**kw, "suite_params": {"fractions": (0.5,)}})
    half = alone.set_index(["condition", "metric"]).value  # as a resumed run computes one condition
    assert half.equals(values[0].loc[half.index])
    other_seed = rbvit.evaluate(model, "occlusion", seed=1, **kw).set_index(["condition", "metric"]).value
    assert (
        not other_seed.loc[("random/fraction=0.00/repeat=0", "nll")]
        == values[0].loc[("random/fraction=0.00/repeat=0", "nll")]
    )  # the run's seed draws the model's noise as it draws the masks


#: a transfer source that draws its own input noise from the global RNG (a randomized defence)
NOISY_SOURCE = """
import timm, torch


class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32,
                                     patch_size=4, depth=2)

    def forward(self, x):
        return self.net(x + 0.1 * torch.randn_like(x))


def make():
    return Noisy(), {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3, "label_space": "cifar10"}
"""


@needs_cifar
def test_a_randomized_transfer_source_crafts_the_same_adversarials_whatever_the_callers_rng(
    tmp_path, monkeypatch
):
    """Crafting on a randomized source (its gradients and its correct-on-source flags) drew from the caller's
    RNG: two runs of one seed stored other adversarials. Each batch's crafting is seeded like the target's."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "noisy_source.py").write_text(NOISY_SOURCE)
    target = str(write_cifar_card(tmp_path / "target", seed=1))
    params = {"source": "noisy_source:make", "attack": "pgd", "steps": 2, "population": "all"}
    rows = []
    for caller_seed in (100, 101):
        torch.manual_seed(caller_seed)
        df = rbvit.evaluate(target, "transfer", data=str(CIFAR10_TEST), limit=10, suite_params=params,
                            progress=False, out=str(tmp_path / f"out{caller_seed}"),
                            cache_dir=str(tmp_path / f"c{caller_seed}"))  # fmt: skip
        rows.append(df.set_index(["condition", "metric"]).value)
    assert rows[0].equals(rows[1])
    sys.modules.pop("noisy_source", None)
