"""Metrics: what a suite measures and how its numbers are aggregated.

- ``accumulators``: streaming per-example accumulators and the metric catalogue (``METRICS``).
- ``statistics``: Wilson intervals and other small statistics.
- ``mce``: ImageNet-C corruption errors normalised by AlexNet's.
- ``stability``: ImageNet-P flip probability and top-5 distance.
- ``ood``: ImageNet-O scores (AUPR, AUROC, FPR95).
- ``cka``: centred kernel alignment between representations.
"""
