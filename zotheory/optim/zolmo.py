r"""ZO-LMO: zeroth-order momentum plus any linear minimisation oracle, chosen per parameter group.

.. math::
    m_t = \beta m_{t-1} + (1-\beta)\hat g_t,\qquad x_{t+1} = x_t + \eta_t\,\mathrm{lmo}_1(m_t),\qquad
    \mathrm{lmo}_1(m) = \arg\min_{\|s\|\le1}\langle m, s\rangle

applied per tensor (the ball is the product of the tensors' unit balls: the layer-wise LMO of Scion/Gluon,
§5.30; ``docs/theory.md`` §3.9 for the Scion/Gluon updates ``x <- x + gamma rho lmo(d)``). Special
cases: ``norm="linf"`` with ``beta = 0`` is ZO-signSGD; ``"l2"`` normalised ZO-SGD; ``"spectral"`` a
ZO-Muon with the exact polar factor; ``"spectral_ns"`` ZO-Muon with the quintic Newton–Schulz.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Unpack

from zotheory.estimators import ZOEstimate
from zotheory.lmo import NORMS, NewtonSchulzSpectral, Norm, Nuclear, Scaled, Spectral, get_norm, rms_radius, unscaled
from zotheory.optim.base import ZOOptimizer, validate_unit_interval
from zotheory.optim.config import EstimatorOptions
from zotheory.optim.muon import ema_

__all__ = ["MATRIX_NORMS", "ZOLMO", "needs_matrix", "resolve_norm"]

#: Registered norm names whose LMO needs a tensor with at least 2 dims.
MATRIX_NORMS: frozenset[str] = frozenset({"spectral", "nuclear", "spectral_ns", "spectral_ns_cubic"})

LRSchedule = Callable[[int], float]


def resolve_norm(spec: str | Norm) -> Norm:
    """A :class:`~zotheory.lmo.Norm` from a name of :data:`zotheory.lmo.NORMS` or an instance."""
    if isinstance(spec, Norm):
        return spec
    if not isinstance(spec, str) or spec not in NORMS:
        raise ValueError(f"unknown norm {spec!r}; valid names: {', '.join(sorted(NORMS))}")
    return get_norm(spec)


def needs_matrix(norm: Norm) -> bool:
    """Whether the norm's LMO is defined on matrices only (spectral, nuclear, Newton–Schulz)."""
    return isinstance(unscaled(norm)[0], (Spectral, Nuclear, NewtonSchulzSpectral))


class ZOLMO(ZOOptimizer):
    r"""Zeroth-order LMO method with EMA momentum (module docstring for the update and its special cases).

    Args:
        params: tensors or parameter groups; a group may set ``"norm"`` (a name of
            :data:`zotheory.lmo.NORMS` — ``l2``, ``linf``/``sign``, ``l1``, ``spectral``, ``nuclear``,
            ``spectral_ns``, ``spectral_ns_cubic``, ... — or a :class:`~zotheory.lmo.Norm`), ``"lr"`` and
            ``"beta"``. Matrix norms are refused for tensors with fewer than 2 dims
            (:func:`zotheory.optim.muon.muon_param_groups` with ``key="norm"`` builds the split).
        lr: ``eta`` (the LMO radius is 1, so the step is ``lr`` times the unit-ball LMO).
        beta: momentum in [0, 1); ``beta = 0`` keeps no buffer (``m_t = g_hat_t``).
        radii: the tensors' radii in the product norm: ``"unit"`` (default; every step is ``lr`` in each tensor's
            own norm) or ``"rms"`` (tensor ``l``'s LMO times :func:`zotheory.lmo.rms_radius`, so that a step moves
            every tensor's entries by about ``lr`` in RMS; the same radii as AdaNAGED's ``radii="rms"``).
        lr_schedule: optional ``t -> factor`` with ``eta_t = lr * factor(t)`` (``t = 0, 1, ...`` counts the
            steps taken, skipped ones included); e.g. Frank–Wolfe's ``lambda t: 2 / (t + 2)``. Torch's
            ``lr_scheduler`` classes work as well, through the ``"lr"`` key.

    Memory: with ``beta > 0`` one buffer of parameter size (fp32 for half-precision parameters).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        norm: str | Norm = "l2",
        beta: float = 0.9,
        radii: str = "unit",
        lr_schedule: LRSchedule | None = None,
        **options: Unpack[EstimatorOptions],
    ) -> None:
        if lr_schedule is not None and not callable(lr_schedule):
            raise ValueError(f"lr_schedule must be a callable t -> factor, got {lr_schedule!r}")
        if radii not in ("unit", "rms"):
            raise ValueError(f"radii must be one of ['unit', 'rms'], got {radii!r}")
        self.lr_schedule = lr_schedule
        self.radii = radii
        self._norms: dict[int, Norm] = {}
        super().__init__(
            params,
            dict(lr=lr, norm=norm, beta=beta),
            **options,
        )
        self._blocks = [
            self._norm(g) if radii == "unit" else Scaled(self._norm(g), rms_radius(self._norm(g), tuple(p.shape)))
            for p, g in zip(self.zo_params(), self.zo_param_groups(), strict=True)
        ]

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        validate_unit_interval("beta", group["beta"])
        norm = resolve_norm(group["norm"])
        if needs_matrix(norm):
            names = group.get("param_names")
            for k, p in enumerate(group["params"]):
                if p.dim() < 2:
                    name = names[k] if names is not None else f"tensor {k} of the group"
                    raise ValueError(
                        f"norm {norm.name!r} needs matrices, but {name} has shape {tuple(p.shape)}; "
                        f"give vectors an entrywise norm (e.g. muon_param_groups(..., key='norm', other='linf'))"
                    )

    def _norm(self, group: dict[str, Any]) -> Norm:
        spec = group["norm"]
        key = id(spec) if isinstance(spec, Norm) else hash(spec)
        if key not in self._norms:
            self._norms[key] = resolve_norm(spec)
        return self._norms[key]

    def lr_factor(self) -> float:
        """``factor(t)`` of the coming step (1 without a schedule)."""
        if self.lr_schedule is None:
            return 1.0
        t = self.step_count
        factor = float(self.lr_schedule(t))
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"lr_schedule({t}) returned {factor!r}; it must be finite and >= 0")
        return factor

    def _update(self, est: ZOEstimate) -> None:
        factor = self.lr_factor()
        for i, p, group, g in self.dense_estimates(est):
            m = ema_(self.state[p], "momentum_buffer", g, group["beta"])
            s = self._blocks[i].lmo(m, 1.0)
            p.add_(s.to(p.dtype), alpha=group["lr"] * factor)
