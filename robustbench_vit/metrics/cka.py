"""Linear CKA between layer representations, accumulated over minibatches (Nguyen, Raghu & Kornblith 2021,
"Do Wide and Deep Networks Learn the Same Things?"; used by Raghu et al. 2021 for ViTs vs CNNs).

Per minibatch of n examples, each layer's features X (n, d) give a linear Gram matrix K = X X^T, and the
unbiased HSIC estimator of Song et al. (2012) is

    HSIC_1(K, L) = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)),

with K~, L~ the Grams with zeroed diagonals. Minibatch CKA is mean HSIC_1(K, L) over batches divided by
sqrt(mean HSIC_1(K, K) * mean HSIC_1(L, L)). Every term is an inner product of per-layer vectors
(the flattened K~, its row sums, its total), so all layer pairs of a batch cost one matrix product.
"""

from __future__ import annotations

import torch

__all__ = ["gram", "hsic1", "MinibatchCKA"]


def gram(x: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix of (n, ...) features, in float64."""
    f = x.reshape(len(x), -1).double()
    return f @ f.T


def hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741 - the paper's name
    """The unbiased HSIC estimator of two (n, n) Gram matrices (n >= 4)."""
    n = k.shape[0]
    if n < 4:
        raise ValueError("unbiased HSIC needs at least 4 examples per batch")
    kt = k - torch.diag(torch.diag(k))
    lt = l - torch.diag(torch.diag(l))
    one = torch.ones(n, 1, dtype=k.dtype, device=k.device)
    term = torch.trace(kt @ lt)
    term = term + (one.T @ kt @ one) * (one.T @ lt @ one) / ((n - 1) * (n - 2))
    term = term - 2.0 / (n - 2) * (one.T @ kt @ lt @ one)
    return (term / (n * (n - 3))).squeeze()


class MinibatchCKA:
    """Streams minibatches of features of layers A (rows) and B (columns) into an (A, B) linear CKA matrix.

    ``update(feats_a, feats_b)`` takes two lists of (n, ...) tensors from the same n images (B may be the
    same list, for a model against itself). Batches with fewer than 4 images are skipped (logged by the
    caller); ``n`` counts the images used.
    """

    def __init__(self) -> None:
        self.cross: torch.Tensor | None = None
        self.self_a: torch.Tensor | None = None
        self.self_b: torch.Tensor | None = None
        self.n = 0
        self.batches = 0

    @staticmethod
    def _terms(grams: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flattened zero-diagonal Grams (L, n*n), their row sums (L, n), their totals (L,))."""
        kt = torch.stack([g - torch.diag(torch.diag(g)) for g in grams])
        rows = kt.sum(2)
        return kt.flatten(1), rows, rows.sum(1)

    @staticmethod
    def _pairs(ta: tuple, tb: tuple, n: int) -> torch.Tensor:
        va, ra, sa = ta
        vb, rb, sb = tb
        value = va @ vb.T + torch.outer(sa, sb) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ra @ rb.T)
        return value / (n * (n - 3))

    def update(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor] | None = None) -> None:
        n = len(feats_a[0])
        if n < 4:
            return
        ta = self._terms([gram(f) for f in feats_a])
        tb = ta if feats_b is None else self._terms([gram(f) for f in feats_b])
        cross = self._pairs(ta, tb, n).cpu()
        # copies, not views of ``cross`` (which is summed into in place on later batches)
        diag_a = torch.diagonal(self._pairs(ta, ta, n) if feats_b is not None else cross).clone()
        diag_b = torch.diagonal(self._pairs(tb, tb, n)).cpu() if feats_b is not None else diag_a.clone()
        if self.cross is None:
            self.cross, self.self_a, self.self_b = cross, diag_a, diag_b
        else:
            self.cross += cross
            self.self_a += diag_a  # type: ignore[operator]
            self.self_b += diag_b  # type: ignore[operator]
        self.n += n
        self.batches += 1

    def result(self) -> torch.Tensor:
        """The (A, B) CKA matrix (means over batches cancel in the ratio)."""
        if self.cross is None:
            raise ValueError("no batch of at least 4 images was seen")
        return self.cross / torch.sqrt(torch.outer(self.self_a, self.self_b))  # type: ignore[arg-type]
