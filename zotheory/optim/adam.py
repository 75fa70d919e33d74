r"""ZO-Adam / ZO-AdaMM: Adam moments on a zeroth-order estimate (Chen et al., NeurIPS 2019).

ZO-AdaMM (Chen, Liu, Xu, Li, Lin, Hong, Cox, "ZO-AdaMM: Zeroth-Order Adaptive Momentum Method for Black-Box
Optimization", NeurIPS 2019, Alg. 1) runs AMSGrad on the two-point estimate; ZO-Bench's "ZO-Adam" is
torch's ``Adam`` (bias-corrected, no max) fed with ``g_hat`` (``docs/theory.md`` §6.5).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

import torch
from torch import Tensor

from zotheory.estimators import ZOEstimate
from zotheory.optim.base import ZOOptimizer, validate_unit_interval
from zotheory.optim.config import EstimatorOptions

__all__ = ["ZOAdam", "adam_direction", "adam_moments_"]


def adam_direction(
    exp_avg: Tensor, denom_sq: Tensor, step: int, beta1: float, beta2: float, adam_eps: float, bias_correction: bool
) -> Tensor:
    r"""``(m / b_1) / (sqrt(v / b_2) + eps)`` with ``b_k = 1 - beta_k^t`` (1 without bias correction)
    (Kingma & Ba 2015, Alg. 1; torch's placement of ``eps``). ``denom_sq`` is ``v`` or, for AMSGrad,
    ``max_{s<=t} v_s`` (Reddi et al. 2018; ZO-AdaMM Alg. 1 line 7)."""
    b1 = 1.0 - beta1**step if bias_correction else 1.0
    b2 = 1.0 - beta2**step if bias_correction else 1.0
    denom = denom_sq.sqrt().div_(math.sqrt(b2)).add_(adam_eps)
    return (exp_avg / b1).div_(denom)


class ZOAdam(ZOOptimizer):
    r"""ZO-Adam (ZO-Bench) and, with ``amsgrad=True``, ZO-AdaMM (Chen et al., NeurIPS 2019).

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\hat g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\hat g_t^2,
        \qquad \hat v_t = \max(\hat v_{t-1}, v_t)\ (\text{AMSGrad}) \\
        x_{t+1} &= x_t - \eta\,\frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t / (1-\beta_2^t)} + \epsilon}

    (bias correction optional; ZO-AdaMM's paper has none and its projection step is not used: the problem is
    unconstrained). Moments are fp32 for half-precision parameters. Declared state: 2 buffers of parameter
    size (3 with AMSGrad). The Adam epsilon is ``adam_eps``: ``eps`` is the smoothing radius, as in every
    :class:`~zotheory.optim.base.ZOOptimizer`. ``t`` counts the updates applied to the tensor (skipped
    non-finite steps do not count).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        amsgrad: bool = False,
        bias_correction: bool = True,
        **options: Unpack[EstimatorOptions],
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, betas=tuple(betas), adam_eps=adam_eps, amsgrad=amsgrad, bias_correction=bias_correction),
            **options,
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        validate_unit_interval("beta1", betas[0])
        validate_unit_interval("beta2", betas[1])
        group["betas"] = (float(betas[0]), float(betas[1]))
        a = group["adam_eps"]
        if not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
            raise ValueError(f"adam_eps must be finite and > 0, got {a!r}")

    def _update(self, est: ZOEstimate) -> None:
        for _, p, group, g in self.dense_estimates(est):
            beta1, beta2 = group["betas"]
            state = self.state[p]
            m, v = adam_moments_(state, g, beta1, beta2, group["amsgrad"])
            d = adam_direction(m, v, state["step"], beta1, beta2, group["adam_eps"], group["bias_correction"])
            p.add_(d.to(p.dtype), alpha=-group["lr"])


def adam_moments_(state: dict[str, Any], g: Tensor, beta1: float, beta2: float, amsgrad: bool) -> tuple[Tensor, Tensor]:
    r"""``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2`` (and ``v_max <- max(v_max, v)`` for
    AMSGrad) in ``state`` (zeros at first, ``state["step"]`` counts the updates); returns ``(m, v or v_max)``
    (Kingma & Ba 2015, Alg. 1; Reddi et al. 2018)."""
    if "exp_avg" not in state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(g)
        state["exp_avg_sq"] = torch.zeros_like(g)
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(g)
    state["step"] += 1
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.mul_(beta1).add_(g, alpha=1.0 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
    if amsgrad:
        vmax = state["max_exp_avg_sq"]
        torch.maximum(vmax, v, out=vmax)
        v = vmax
    return m, v
