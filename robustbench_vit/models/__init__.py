"""Model zoo (data only) and loading (builds modules on demand)."""

from robustbench_vit.models.zoo import MODELS, ModelSpec

__all__ = ["MODELS", "ModelSpec"]
