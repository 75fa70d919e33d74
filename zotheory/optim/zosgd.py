"""ZO-SGD (MeZO) with optional momentum (ZO-SGD-MMT) and MeZO's weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

from torch import Tensor

from zotheory.estimators import ZOEstimate
from zotheory.optim.base import ZOOptimizer, validate_nonnegative, validate_unit_interval
from zotheory.optim.config import EstimatorOptions

__all__ = ["ZOSGD", "heavy_ball_"]


class ZOSGD(ZOOptimizer):
    r"""Zeroth-order SGD: MeZO (Malladi et al., NeurIPS 2023, Alg. 1) and ZO-SGD-MMT.

    .. math::
        g_t = \frac{1}{q}\sum_{j<q} \frac{f(x_t + r z_j) - f(x_t - r z_j)}{2r} z_j,\qquad
        m_t = \beta m_{t-1} + g_t,\qquad
        x_{t+1} = x_t - \eta\,(m_t + \lambda x_t)

    (``beta = 0``: no momentum buffer and ``m_t = g_t``; weight decay ``lambda`` skips
    biases and LayerNorm when parameters are given with names, as MeZO does).
    Without momentum the update is applied by regenerating ``z`` and folding the restore
    of the last perturbation into it, ``x <- x - r z + (r - eta g) z`` (3 passes over the
    parameters per direction, no buffers: extra memory = one tensor-sized scratch).
    With momentum a buffer ``m`` of parameter size is kept (declared in :meth:`state_bytes`).

    Args:
        lr: step size ``eta``; momentum: ``beta`` in [0, 1); weight_decay: ``lambda >= 0``;
        the remaining arguments are those of :class:`~zotheory.optim.base.ZOOptimizer`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        **options: Unpack[EstimatorOptions],
    ) -> None:
        validate_unit_interval("momentum", momentum)
        validate_nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay), **options)

    @property
    def folds_restore(self) -> bool:
        """Weight decay applies to the unperturbed ``x_t`` (one extra pass, only with decay)."""
        return not any(self.weight_decay_factors())

    def _update(self, est: ZOEstimate) -> None:
        params = self.zo_params()
        groups = self.zo_param_groups()
        for p, group, wd in zip(params, groups, self.weight_decay_factors(), strict=False):
            if wd:
                p.mul_(1.0 - group["lr"] * wd)
        if all(g["momentum"] == 0 for g in groups):
            self.apply_estimate(est, [-g["lr"] for g in groups])
            return
        for _, p, group, g in self.dense_estimates(est):
            if group["momentum"] == 0:
                p.add_(g.to(p.dtype), alpha=-group["lr"])
                continue
            p.add_(heavy_ball_(self.state[p], g, group["momentum"]).to(p.dtype), alpha=-group["lr"])


def heavy_ball_(state: dict[str, Any], g: Tensor, momentum: float) -> Tensor:
    """``m_t = beta m_{t-1} + g_t`` (``m_0 = g_0``) in ``state["momentum_buffer"]``, returned (heavy-ball
    momentum as torch's SGD keeps it, ZO-Bench's ZO-SGD-MMT)."""
    buf = state.get("momentum_buffer")
    if buf is None:
        buf = state["momentum_buffer"] = g.clone()
    else:
        buf.mul_(momentum).add_(g)
    return buf
