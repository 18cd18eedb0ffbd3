"""Analytic input gradients of the autoencoder for the purifiers' no-autograd fast paths.

The purifiers only ever need gradients with respect to their own iterates (L, L2 or z), never
with respect to the weights, so autograd's graph bookkeeping is pure overhead there.
:class:`LeakyMLP` is the AE (or its decoder) as plain matrices with a hand-written transposed
pass; :func:`block_grad` is the gradient of the block-wise smoothed l2 norms the losses are made
of. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional

__all__ = [
    "SINGLE_THREAD_ROWS",
    "LeakyMLP",
    "MLPCache",
    "block_grad",
    "reference_step1",
    "small_batch_threads",
]

# : below this many rows per step, the fast paths run on one intra-op thread (see
# small_batch_threads)
SINGLE_THREAD_ROWS = 4096


@contextmanager
def small_batch_threads(rows: int, device: torch.device) -> Iterator[None]:
    """Run a CPU call on one intra-op thread when its steps have fewer than
    ``SINGLE_THREAD_ROWS`` rows.

    The steps' matmuls are tiny (rows x a few hundred); splitting them over threads costs more in
    synchronisation than it saves, and on a loaded machine every parallel region waits for a
    descheduled worker (profiled: 36 ms per 1 x 150 x 200 mm with 2 threads under load, 10 us
    with 1). The previous setting is restored on exit; nothing changes at import time."""
    saved = torch.get_num_threads()
    if device.type != "cpu" or rows >= SINGLE_THREAD_ROWS or saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class LeakyMLP:
    """A frozen chain of Linear layers and LeakyReLUs with its analytic input gradient (no
    autograd).

    Consecutive Linear layers with nothing in between (the AE's encoder output feeding the
    decoder) are merged into one when that is cheaper (a wide code: 200-150-200 -> 200-200, not
    200-32-200). ``first`` is the first layer's pre-activation a1 = W1 x + b1;
    ``forward_from(a1)`` the rest, returning the output and every activation's pre-activation
    (None between unmerged Linears); ``backward_to_first`` maps an output gradient to the
    gradient w.r.t. a1 with torch's own leaky_relu backward kernel, and ``backward`` on to the
    input (``@ W1``). ``gram`` = W1 W1^T lets a caller step in a1 instead of x: x - lr W1^T d
    <=>  a1 - lr (d @ gram), and ||W1^T d||^2 = d . (d @ gram)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        slopes: list[float | None] = []
        after_linear = False
        for module in modules:
            if isinstance(module, nn.Linear):
                w = module.weight.detach()
                b = module.bias.detach() if module.bias is not None else torch.zeros_like(w[:, 0])
                if after_linear:
                    w0, b0 = layers[-1]
                    if w.shape[0] * w0.shape[1] < w.numel() + w0.numel():
                        layers[-1] = (w @ w0, w @ b0 + b)
                        continue
                    slopes.append(None)
                layers.append((w, b))
                after_linear = True
            elif isinstance(module, nn.LeakyReLU) and after_linear:
                slopes.append(float(module.negative_slope))
                after_linear = False
            else:
                raise TypeError(f"LeakyMLP: unsupported layer {type(module).__name__}")
        if not after_linear or len(slopes) != len(layers) - 1:
            raise TypeError(
                "LeakyMLP: expected Linear layers separated by at most single LeakyReLUs"
            )
        self.weights = [w for w, _ in layers]
        self.weights_t = [w.t().contiguous() for w in self.weights]
        self.biases = [b for _, b in layers]
        self.slopes = slopes
        self.gram = self.weights[0] @ self.weights_t[0]

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer's affine map (no activation)."""
        return torch.addmm(self.biases[0], x, self.weights_t[0])

    def forward_from(self, a1: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The rest of the network from the first layer's output; returns the output and the
        pre-activations the backward pass needs."""
        pre: list[torch.Tensor | None] = []
        x = a1
        for i, slope in enumerate(self.slopes):
            pre.append(None if slope is None else x)
            if slope is not None:
                x = functional.leaky_relu(x, slope)
            x = torch.addmm(self.biases[i + 1], x, self.weights_t[i + 1])
        return x, pre

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The network's output and pre-activations for input ``x``."""
        return self.forward_from(self.first(x))

    def backward_to_first(self, grad: torch.Tensor, pre: list[torch.Tensor | None]) -> torch.Tensor:
        """The gradient with respect to the first layer's output, given the output's gradient."""
        for i in range(len(self.weights) - 1, 0, -1):
            grad = grad @ self.weights[i]
            x, slope = pre[i - 1], self.slopes[i - 1]
            if x is not None and slope is not None:
                grad = torch.ops.aten.leaky_relu_backward(grad, x, slope, False)
        return grad

    def backward(self, grad: torch.Tensor, pre: list[torch.Tensor | None]) -> torch.Tensor:
        """The gradient with respect to the input, given the output's gradient (no autograd)."""
        return self.backward_to_first(grad, pre) @ self.weights[0]


class MLPCache:
    """One :class:`LeakyMLP` per module, rebuilt only when a parameter changes (version or
    storage)."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._mlp: LeakyMLP | None = None

    def get(self, *modules: nn.Module) -> LeakyMLP:
        """The :class:`LeakyMLP` of ``modules``, rebuilt only when one of their parameters
        changed."""
        params = [p for module in modules for p in module.parameters()]
        key = (
            tuple(id(m) for m in modules),
            *((p.data_ptr(), p._version, p.dtype, p.device) for p in params),
        )
        if self._mlp is None or key != self._key:
            layers = [layer for module in modules for layer in module.children()]
            with torch.no_grad():
                self._mlp = LeakyMLP(layers)
            self._key = key
        return self._mlp


def block_grad(
    r: torch.Tensor, weight: torch.Tensor, num_parties: int, emb_dim: int
) -> torch.Tensor:
    """Gradient of sum_i weight_i * sqrt(||r_i||^2 + eps) with respect to r: weight_i * r_i /
    sqrt(..)."""
    blocks = r.view(len(r), num_parties, emb_dim)
    norms = (blocks.square().sum(dim=-1) + 1e-8).sqrt()
    return (blocks * (weight / norms).unsqueeze(-1)).view_as(r)


def reference_step1(
    mlp: LeakyMLP,
    a1: torch.Tensor,
    acc: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    lr: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of copur-ref's step 1 in the first layer's pre-activation a1 = W1 L + b1.

    With d the loss gradient w.r.t. a1, the step L - lr W1^T d is a1 - lr d W1 W1^T; returns the
    stepped a1, ``acc`` + d (L is rebuilt from the sum of the d) and ||W1^T d|| (the gradient
    norm w.r.t. L that the early stop compares), per row."""
    m, e = weight.shape[1], target.shape[1] // weight.shape[1]
    out, pre = mlp.forward_from(a1)
    d = mlp.backward_to_first(block_grad(out - target, weight, m, e), pre)
    dg = d @ mlp.gram
    return a1 - lr * dg, acc + d, (d * dg).sum(dim=1).clamp_min(0).sqrt()
