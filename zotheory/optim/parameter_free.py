r"""Parameter-free zeroth-order baselines: ZO-DoG, ZO-POEM and ZO-ALIAS-Sign.

Three direct, dense implementations of the parameter-free rules that AdaNAGED is built from
(:mod:`zotheory.optim.adanaged`), each with the ZO estimate in place of the gradient. They are kept
simple on purpose (one readable update each) and double as references: ``tests/test_adanaged.py``
checks that AdaNAGED in the matching configuration follows the same trajectory.

* :class:`ZODoG` — DoG (Ivgi, Hinder, Carmon, ICML 2023, Eq. 1) on two-point Gaussian estimates:
  ``eta_t = rbar_t / sqrt(sum_{i<=t} ||g_i||_2^2)``, ``rbar_t = max(r_eps, max_{i<=t} ||x_i - x_0||_2)``,
  ``r_eps = reps_rel (1 + ||x_0||_2)``, ``x_{t+1} = x_t - eta_t g_t``; fixed smoothing radius.
* :class:`ZOPOEM` — POEM (Ren & Luo, ICML 2025, arXiv 2502.05600) without the projection (unconstrained):
  sphere two-point estimator ``g_t = d (f(x + mu v) - f(x - mu v)) / (2 mu) v``, ``v ~ U(S^{d-1})``, the same
  DoG step. **POEM's exact smoothing rule mu_t could not be obtained** (``docs/theory.md`` §7); we use
  AdaNAGED's step-tied rule ``mu_{t+1} = clip(||x_{t+1} - x_t||_2 / 2, floor, mu_0)`` (derivation in
  ``docs/adanaged.md``), so this class is "POEM-style", not POEM.
* :class:`ZOALIASSign` — ALIAS parameter-free Sign-SGD (Medyakov et al., arXiv 2506.03725) on Gaussian
  estimates: ``lambda_t = (sum_{i<t} ||g_{i+1} - g_i||_1 / ||x_{i+1} - x_i||_inf)^{-1/2}``,
  ``d_t = max(d_{t-1}, sum_{i<t} gamma_i <g_{i+1}, sign(g_i)>)``, ``gamma_t = lambda_t sqrt(d_t)``,
  ``x_{t+1} = x_t - gamma_t sign(g_t)``. The initial values (not in the sources we could read) are ours:
  ``gamma_0 = r_eps = reps_rel (1 + ||x_0||_inf)`` and ``d_0 = gamma_0 ||g_0||_1``.

All three keep one parameter-sized buffer (DoG/POEM: ``x_0``; ALIAS: the previous estimate) and use
2 closure calls per step (central differences, ``q = 1``). ``lr`` multiplies the parameter-free step
(leave it at 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Unpack

import torch
from torch import Tensor

from zotheory.estimators import ZOEstimate
from zotheory.optim.base import ZOOptimizer, _state_dtype, validate_unit_interval
from zotheory.optim.config import EstimatorOptions
from zotheory.optim.measures import radius_floor, reps_initial_distance

__all__ = ["ZOALIASSign", "ZODoG", "ZOPOEM"]


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


class _DoGBase(ZOOptimizer):
    """Shared DoG machinery (global Euclidean distance from ``x_0``, sum of squared estimate norms)."""

    fixed_options = frozenset({"q", "directions", "scheme", "policy"})
    #: The direction family of the estimates (DoG: Gaussian; POEM: the sphere).
    family: str = "gaussian"

    def __init__(
        self, params: Iterable[Any], lr: float = 1.0, *, reps_rel: float = 1e-6, **options: Unpack[EstimatorOptions]
    ) -> None:
        self.reps_rel = _check_positive("reps_rel", reps_rel)
        config = self.estimator_config(options, q=1, directions=self.family, scheme="central")
        super().__init__(params, dict(lr=lr), config=config)
        self.state["dog"] = {"rbar": None, "G": 0.0, "dist": 0.0}

    @property
    def folds_restore(self) -> bool:
        """The first step measures ``x_0`` itself: restored first."""
        return self.state["dog"]["rbar"] is not None

    def _x0(self) -> list[Tensor]:
        params = self.zo_params()
        for p in params:
            if "x0" not in self.state[p]:
                self.state[p]["x0"] = p.detach().to(_state_dtype(p)).clone()
        return [self.state[p]["x0"] for p in params]

    def _dog_step(self, est: ZOEstimate) -> float:
        """Apply ``x <- x - lr eta_t g_t`` and return the Euclidean length of the step."""
        params = self.zo_params()
        st = self.state["dog"]
        if st["rbar"] is None:
            x_init = self._x0()
            st["rbar"] = float(
                reps_initial_distance(self.reps_rel, math.sqrt(sum(float(x.double().pow(2).sum()) for x in x_init)))
            )
        grads = [g for _, _, _, g in self.dense_estimates(est)]
        st["G"] += sum(float(g.double().pow(2).sum()) for g in grads)
        st["rbar"] = max(st["rbar"], st["dist"])
        eta = st["rbar"] / math.sqrt(st["G"]) if st["G"] > 0 else 0.0
        sq_step, dist_sq = 0.0, 0.0
        for p, g, group, x0 in zip(params, grads, self.zo_param_groups(), self._x0(), strict=False):
            step = g.mul_(-eta * group["lr"])
            sq_step += float(step.double().pow(2).sum())
            p.add_(step.to(p.dtype))
            dist_sq += float((p.detach().double() - x0.double()).pow(2).sum())
        st["dist"] = math.sqrt(dist_sq)
        return math.sqrt(sq_step)

    def step_size(self) -> float:
        """The last DoG ``eta_t`` (0 before the first step)."""
        st = self.state["dog"]
        return st["rbar"] / math.sqrt(st["G"]) if st["rbar"] is not None and st["G"] > 0 else 0.0


class ZODoG(_DoGBase):
    """DoG with two-point Gaussian ZO estimates (module docstring). Memory: the ``x_0`` copy.

    Args:
        lr: multiplier of DoG's step (1 = DoG). reps_rel: DoG's initial movement ``r_eps / (1 + ||x_0||)``.
        eps: fixed smoothing radius. The rest: :class:`~zotheory.optim.base.ZOOptimizer`.
    """

    def _update(self, est: ZOEstimate) -> None:
        self._dog_step(est)


class ZOPOEM(_DoGBase):
    """POEM-style: sphere two-point estimates, DoG step, step-tied smoothing radius (module docstring).

    Args:
        lr: multiplier of the step (1 = DoG/POEM). reps_rel: initial movement. eps: initial (largest)
            smoothing radius ``mu_0``. The rest: :class:`~zotheory.optim.base.ZOOptimizer`.
    """

    family = "sphere"

    def __init__(
        self, params: Iterable[Any], lr: float = 1.0, *, reps_rel: float = 1e-6, **options: Unpack[EstimatorOptions]
    ) -> None:
        super().__init__(params, lr, reps_rel=reps_rel, **options)
        self.mu0 = self.eps
        self.state["dog"]["mu"] = self.mu0

    def radius(self) -> float:
        return float(self.state["dog"]["mu"])

    def _update(self, est: ZOEstimate) -> None:
        length = self._dog_step(est)
        floor = radius_floor(self.zo_params(), self.directions, self.mu0)
        # the sphere direction has ||v|| = 1, so the perturbation length is mu itself
        self.state["dog"]["mu"] = min(self.mu0, max(floor, 0.5 * length))


class ZOALIASSign(ZOOptimizer):
    """ALIAS parameter-free Sign-SGD with two-point Gaussian ZO estimates (module docstring).

    Args:
        lr: multiplier of ``gamma_t`` (1 = ALIAS). reps_rel: first step ``gamma_0 = reps_rel (1 + ||x_0||_inf)``.
        eps: fixed smoothing radius. The rest: :class:`~zotheory.optim.base.ZOOptimizer`.

    ``momentum = beta > 0`` runs the same rule on the EMA ``m_t = beta m_{t-1} + (1 - beta) g_t`` (``m_0 = g_0``)
    as ALIAS's momentum variant does (its exact form not obtained; ours): ``lambda`` from ``||m_{i+1} - m_i||_1``,
    the step ``-gamma sign(m_t)``, the decrease from the fresh ``<g_{i+1}, sign(m_i)>``.

    Memory: the previous estimate / momentum (one parameter-sized buffer).
    """

    fixed_options = frozenset({"q", "directions", "scheme", "policy"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        momentum: float = 0.0,
        reps_rel: float = 1e-6,
        **options: Unpack[EstimatorOptions],
    ) -> None:
        self.reps_rel = _check_positive("reps_rel", reps_rel)
        validate_unit_interval("momentum", momentum)
        config = self.estimator_config(options, q=1, directions="gaussian", scheme="central")
        super().__init__(params, dict(lr=lr, momentum=momentum), config=config)
        self.state["alias"] = {"gamma": None, "Lsum": 0.0, "dsum": 0.0, "d": None, "prev_step": 0.0}

    @property
    def folds_restore(self) -> bool:
        """The first step measures ``x_0`` itself: restored first."""
        return self.state["alias"]["gamma"] is not None

    def _update(self, est: ZOEstimate) -> None:
        params = self.zo_params()
        st = self.state["alias"]
        if st["gamma"] is None:
            x0_inf = max(float(p.detach().double().abs().max()) for p in params)
            st["gamma"] = float(reps_initial_distance(self.reps_rel, x0_inf))
        grads = [g for _, _, _, g in self.dense_estimates(est)]
        prevs = [self.state[p].get("m") for p in params]
        if prevs[0] is None:
            moms = [g.clone() for g in grads]
            st["d"] = st["gamma"] * sum(float(m.double().abs().sum()) for m in moms)
        else:
            moms = [
                h * group["momentum"] + g * (1.0 - group["momentum"])
                for g, h, group in zip(grads, prevs, self.zo_param_groups(), strict=False)
            ]
            diff = sum(float((m.double() - h.double()).abs().sum()) for m, h in zip(moms, prevs, strict=False))
            if st["prev_step"] > 0:
                st["Lsum"] += diff / st["prev_step"]
            st["dsum"] += st["gamma"] * sum(
                float((g.double() * torch.sign(h.double())).sum()) for g, h in zip(grads, prevs, strict=False)
            )
            st["d"] = max(st["d"], st["dsum"])
            if st["Lsum"] > 0:
                st["gamma"] = math.sqrt(max(st["d"], 0.0) / st["Lsum"])
        step_inf = 0.0
        for p, m, group in zip(params, moms, self.zo_param_groups(), strict=False):
            s = torch.sign(m)
            scale = st["gamma"] * group["lr"]
            if bool((s != 0).any()):
                step_inf = max(step_inf, scale)
            p.add_(s.mul_(-scale).to(p.dtype))
            self.state[p]["m"] = m
        st["prev_step"] = step_inf

    def step_size(self) -> float:
        g = self.state["alias"]["gamma"]
        return 0.0 if g is None else float(g)
