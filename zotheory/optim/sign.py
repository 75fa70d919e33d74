r"""The two zeroth-order "sign SGD" methods, each named for what it computes (``docs/theory.md`` §6.5).

* :class:`ZOSignSGD` — the coordinate-wise sign of the estimate, ``x <- x - lr sign(g_hat)``
  (ZO-signSGD, Liu, Chen, Chen & Hong, ICLR 2019; ``docs/theory.md`` §3.8, rate ``O(sqrt(d/T))``).
* :class:`ZOSGDSign` — the sign of the *scalar* projected gradient times the direction,
  ``x <- x - lr sign((f(x + r z) - f(x - r z)) / (2r)) z`` (ZO-Bench's "ZO-SGD-Sign", Zhang et al. ICML 2024,
  ``zo-bench/trainer.py`` ``zo_sign_opt``: ``p.grad = sign(projected_grad) * z``).

They coincide only in special cases (Rademacher ``z``, ``q = 1``: ``sign(c z) = sign(c) z``); for Gaussian
``z`` the first moves every coordinate by exactly ``lr``, the second by ``lr |z_i|``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

import torch
from torch import Tensor

from zotheory.estimators import ZOEstimate
from zotheory.optim.base import ZOOptimizer
from zotheory.optim.config import EstimatorOptions

__all__ = ["ZOSGDSign", "ZOSignSGD", "scalar_sign_coefficients", "sign_direction_"]


def sign_direction_(g: Tensor) -> Tensor:
    """``sign(g)`` in place: the ZO-signSGD direction (Liu et al. 2019, Alg. 1), minus the max-norm LMO of ``g``."""
    return g.sign_()


def scalar_sign_coefficients(directional_derivatives: Tensor) -> Tensor:
    """``sign(delta_j) / q``: the coefficients of ``(1/q) sum_j sign(delta_j) z_j`` (ZO-SGD-Sign with ``q``
    directions; ZO-Bench has ``q = 1``). The family's ``scale`` is not applied: the sign discards magnitude."""
    return torch.sign(directional_derivatives) / directional_derivatives.numel()


class ZOSignSGD(ZOOptimizer):
    r"""ZO-signSGD (Liu et al., ICLR 2019, Alg. 1 with the two-point estimate): coordinate-wise sign.

    .. math::
        \hat g_t = \frac{c}{q}\sum_{j<q}\frac{f(x_t + rz_j) - f(x_t - rz_j)}{2r}z_j,\qquad
        x_{t+1} = x_t - \eta\,\mathrm{sign}(\hat g_t)

    (``c`` the family's unbiasing scale). This is minus the max-norm LMO of the estimate (``lmo.linf_lmo``),
    i.e. :class:`~zotheory.optim.zolmo.ZOLMO` with ``norm="linf"`` and ``beta = 0``. No state; one dense
    estimate per tensor at a time as scratch.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, **options: Unpack[EstimatorOptions]) -> None:
        super().__init__(params, dict(lr=lr), **options)

    def _update(self, est: ZOEstimate) -> None:
        for _, p, group, g in self.dense_estimates(est):
            p.add_(sign_direction_(g).to(p.dtype), alpha=-group["lr"])


class ZOSGDSign(ZOOptimizer):
    r"""ZO-SGD-Sign (ZO-Bench, Zhang et al., ICML 2024): the sign of the scalar projected gradient times ``z``.

    .. math::
        x_{t+1} = x_t - \frac{\eta}{q}\sum_{j<q}\mathrm{sign}\Big(\frac{f(x_t + rz_j) - f(x_t - rz_j)}{2r}\Big)z_j

    Applied in place like MeZO: each ``z_j`` is regenerated once and the pending restore of the last
    perturbation is folded into the update (``x <- x - r z + (r - eta sign(delta)/q) z``); no state, one
    tensor-sized scratch. ZO-Bench's runs used HF's AdamW as the inner step by accident
    (``docs/theory.md`` §6.5); this is the plain SGD form its paper describes.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, **options: Unpack[EstimatorOptions]) -> None:
        super().__init__(params, dict(lr=lr), **options)

    def _update(self, est: ZOEstimate) -> None:
        est.coefficients = scalar_sign_coefficients(est.directional_derivatives)
        self.apply_estimate(est, [-g["lr"] for g in self.zo_param_groups()])
