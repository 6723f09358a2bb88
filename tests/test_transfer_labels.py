"""A transfer source attacks each image's class in its own label space: a source whose classes are ordered
otherwise than the target's is the same classifier, so it crafts the same adversarials. The target's
class indices used to be handed to the source as they were, so such a source was attacked towards
other classes (and its "correct" flags compared its predictions with the wrong labels), with exit 0."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_vit.engine.runner import evaluate
from robustbench_vit.errors import ConfigError
from tests.helpers import CIFAR10_TEST, needs_cifar, write_cifar_card


def _reordered(card, folder, order):
    """The CIFAR-10 card's classifier with its classes listed in ``order``: head rows permuted to match."""
    from safetensors.torch import load_file, save_file

    from robustbench_vit.data.labels import CIFAR10_CLASSES

    raw = json.loads(card.read_text())
    sd = load_file(str(card.parent / raw["weights"]))
    perm = torch.tensor([CIFAR10_CLASSES.index(c) for c in order])
    sd["head.weight"], sd["head.bias"] = sd["head.weight"][perm].clone(), sd["head.bias"][perm].clone()
    folder.mkdir(parents=True)
    save_file(sd, str(folder / "weights.safetensors"))
    (folder / "card.json").write_text(
        json.dumps({**raw, "label_space": list(order), "weights": "weights.safetensors"})
    )
    return folder / "card.json"


@needs_cifar
def test_a_source_with_its_classes_in_another_order_crafts_the_same_attack(tmp_path):
    from robustbench_vit.data.labels import CIFAR10_CLASSES

    source = write_cifar_card(tmp_path / "source", seed=4)
    reversed_source = _reordered(source, tmp_path / "reversed", list(reversed(CIFAR10_CLASSES)))
    target = write_cifar_card(tmp_path / "target", arch="resnet10t", seed=2)
    x = torch.rand(4, 3, 32, 32)
    from robustbench_vit.models.loading import load_model

    a, b = load_model(str(source), device="cpu"), load_model(str(reversed_source), device="cpu")
    assert torch.allclose(a(x), b(x).flip(-1), atol=1e-5)  # one classifier, classes listed in reverse

    def run(src):  # type: ignore[no-untyped-def]
        df = evaluate(
            str(target),
            "transfer",
            suite_params={"source": str(src), "attack": "pgd", "steps": "3", "population": "all"},
            data=str(CIFAR10_TEST),
            limit=30,
            cache_dir=str(tmp_path / "cache"),
            progress=False,
        )
        return df.set_index(["condition", "metric"]).value.fillna(-1).sort_index()

    plain, reordered = run(source), run(reversed_source)
    assert list(plain.index) == list(reordered.index)
    assert plain.to_numpy() == pytest.approx(reordered.to_numpy(), abs=1e-6)


@needs_cifar
def test_a_source_that_lacks_a_class_of_the_images_is_refused(tmp_path):
    """An ImageNet source cannot be attacked towards CIFAR-10 classes: one line, not a number."""
    target = write_cifar_card(tmp_path / "target", arch="resnet10t", seed=2)
    with pytest.raises(ConfigError, match="transfer source timm:test_vit cannot be attacked towards"):
        evaluate(
            str(target),
            "transfer",
            suite_params={"source": "timm:test_vit", "source_pretrained": "false", "attack": "fgsm"},
            data=str(CIFAR10_TEST),
            limit=10,
            cache_dir=str(tmp_path / "cache"),
            progress=False,
        )
