"""Dense reference implementations: every method's formula applied literally to materialised estimates.

A reference mirrors a configured fast optimizer (same direction family, radius, scheme, seeds and group
hyper-parameters) on its own copies of the parameters. Each step it calls
:func:`~zotheory.estimators.estimate_gradient` *without* the folded restore, materialises ``g_hat`` with
:meth:`~zotheory.estimators.ZOEstimate.materialize` (or the directions with ``family.materialize``) and
applies the method's formula with plain out-of-place tensor operations — Newton–Schulz as the literal
polynomial ``X <- sum_k c_k (X X^T)^k X`` without the transposition trick, polar factors and spectral LMOs
from a full SVD. The conformance suite checks that the fast in-place optimizers follow these trajectories
(``tests/test_optimizers.py``). They allocate freely and are meant for small float64 problems.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from zotheory.directions import Coordinate, mix_seed
from zotheory.estimators import ZOEstimate, estimate_gradient
from zotheory.lmo import CUBIC, MUON_QUINTIC, NS_EPS, NewtonSchulzSpectral, Norm, Scaled, get_norm
from zotheory.optim.adanaged import (
    PROBE_FACTOR_MIN,
    ParabolicSearchRule,
    adaptive_factor,
    averaged_factor,
    parabolic_probe,
    probe_factor,
)
from zotheory.optim.base import ZOOptimizer, _state_dtype, is_no_decay_name
from zotheory.optim.measures import power_spectral_norm, radius_floor

__all__ = ["REFERENCES", "ReferenceOptimizer", "literal_lmo", "literal_newton_schulz", "literal_rule"]


# ---------------------------------------------------------------------------------------------- formulas
def literal_newton_schulz(g: Tensor, coefficients: Sequence[float], steps: int, eps: float = NS_EPS) -> Tensor:
    """``X_0 = G / (||G||_F + eps)``, ``X <- sum_k c_k (X X^T)^k X`` (§5.32), on the ``(rows, -1)`` view."""
    x = g.reshape(g.shape[0], -1)
    x = x / (torch.linalg.matrix_norm(x) + eps)
    for _ in range(steps):
        a = x @ x.T
        power = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
        total = torch.zeros_like(x)
        for c in coefficients:
            total = total + c * (power @ x)
            power = power @ a
        x = total
    return x.reshape(g.shape)


def _svd_polar(g: Tensor) -> Tensor:
    u, _, vh = torch.linalg.svd(g.reshape(g.shape[0], -1), full_matrices=False)
    return (u @ vh).reshape(g.shape)


def literal_rule(rule: str, m: Tensor, group: dict[str, Any]) -> Tensor:
    """The direction ``D`` of ``x <- x - lr D`` for the update rules of :mod:`zotheory.optim.muon`."""
    if rule == "sign":
        return torch.sign(m)
    if rule == "sgd":
        return m
    if rule == "l2":
        n = torch.linalg.vector_norm(m)
        return m / n if n > 0 else torch.zeros_like(m)
    if rule == "muon":
        d = literal_newton_schulz(m, group["ns_coefficients"], group["ns_steps"])
        if group.get("shape_scale", False):
            rows, cols = m.shape[0], m.numel() // m.shape[0]
            d = d * max(1.0, rows / cols) ** 0.5
        return d
    raise ValueError(f"unknown update rule {rule!r}")


def literal_lmo(norm: str | Norm, m: Tensor) -> Tensor:
    """``argmin_{||s|| <= 1} <m, s>`` written out for the common norms (§4.1 table of
    ``docs/theory.md``); other norms fall back to :mod:`zotheory.lmo`. A block of radius ``rho``
    (:class:`~zotheory.lmo.Scaled`) is ``rho`` times its base's LMO."""
    if isinstance(norm, Scaled):
        return norm.rho * literal_lmo(norm.base, m)
    name = norm if isinstance(norm, str) else norm.name
    if name == "l2" or name == "frobenius":
        n = torch.linalg.vector_norm(m)
        return -m / n if n > 0 else torch.zeros_like(m)
    if name in ("linf", "sign"):
        return -torch.sign(m)
    if name == "l1":
        flat = m.reshape(-1)
        i = int(torch.argmax(flat.abs()))
        out = torch.zeros_like(flat)
        out[i] = -torch.sign(flat[i])
        return out.reshape(m.shape)
    if name == "spectral":
        return -_svd_polar(m)
    if name == "nuclear":
        u, _, vh = torch.linalg.svd(m.reshape(m.shape[0], -1), full_matrices=False)
        return -torch.outer(u[:, 0], vh[0]).reshape(m.shape)
    if name == "spectral_ns":
        return -literal_newton_schulz(m, MUON_QUINTIC, 5)
    if name == "spectral_ns_cubic":
        return -literal_newton_schulz(m, CUBIC, 10)
    obj = norm if isinstance(norm, Norm) else get_norm(name)
    if isinstance(obj, NewtonSchulzSpectral):
        return -literal_newton_schulz(m, obj.coefficients, obj.steps, obj.eps)
    return obj.lmo(m, 1.0)


# ---------------------------------------------------------------------------------------------- base
class ReferenceOptimizer:
    """Mirrors ``optimizer``'s configuration on ``params`` (copies of its parameters, same order)."""

    def __init__(self, optimizer: ZOOptimizer, params: Sequence[Tensor]) -> None:
        fast = optimizer.zo_params()
        if len(params) != len(fast) or any(p.shape != f.shape for p, f in zip(params, fast, strict=False)):
            raise ValueError("reference parameters must match the optimizer's parameters in number and shape")
        self.params = list(params)
        self.groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.zo_param_groups()]
        self.names = optimizer.zo_param_names()
        self.family = optimizer.directions
        self.eps = optimizer.eps
        self.q = optimizer.q
        self.scheme = optimizer.scheme
        self.seed = int(optimizer.state["zo"]["seed"])
        self.t = int(optimizer.state["zo"]["step"])
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]
        self.lr_schedule: Callable[[int], float] | None = getattr(optimizer, "lr_schedule", None)

    def step_seed(self) -> int:
        return mix_seed(self.seed, self.t)

    def radius(self) -> float:
        """Smoothing radius of the next step (fixed unless a method adapts it)."""
        return self.eps

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Tensor:
        est = estimate_gradient(
            self.params,
            closure,
            self.family,
            step_seed=self.step_seed(),
            q=self.q,
            radius=self.radius(),
            scheme=self.scheme,
        )
        self.update(est)
        self.t += 1
        return est.loss

    def gradient(self, est: ZOEstimate) -> list[Tensor]:
        """Dense ``g_hat`` in the state dtypes."""
        return [g.to(_state_dtype(p)) for g, p in zip(est.materialize(self.params), self.params, strict=False)]

    def update(self, est: ZOEstimate) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set(self, i: int, value: Tensor) -> None:
        self.params[i].copy_(value.to(self.params[i].dtype))


def _ema(st: dict[str, Tensor], g: Tensor, beta: float) -> Tensor:
    if beta == 0:
        return g
    st["m"] = beta * st.get("m", torch.zeros_like(g)) + (1 - beta) * g
    return st["m"]


# ---------------------------------------------------------------------------------------------- methods
class ReferenceZOSGD(ReferenceOptimizer):
    """``m = beta m + g``; ``x <- x - lr (m + lambda x)`` (no decay for bias/LayerNorm names)."""

    def update(self, est: ZOEstimate) -> None:
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est), strict=False)):
            hp, st = self.groups[i], self.state[i]
            wd = 0.0 if is_no_decay_name(self.names[i]) else hp.get("weight_decay", 0.0)
            m = g
            if hp.get("momentum", 0.0) > 0:
                st["m"] = hp["momentum"] * st["m"] + g if "m" in st else g.clone()
                m = st["m"]
            self._set(i, p - hp["lr"] * (m + wd * p))


class ReferenceZOSignSGD(ReferenceOptimizer):
    """``x <- x - lr sign(g_hat)``."""

    def update(self, est: ZOEstimate) -> None:
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est), strict=False)):
            self._set(i, p - self.groups[i]["lr"] * torch.sign(g))


class ReferenceZOSGDSign(ReferenceOptimizer):
    """``x <- x - (lr/q) sum_j sign(delta_j) z_j``."""

    def update(self, est: ZOEstimate) -> None:
        zs = [self.family.materialize(self.params, est.step_seed, j) for j in range(est.q)]
        signs = torch.sign(est.directional_derivatives)
        for i, p in enumerate(self.params):
            d = sum(signs[j].to(p.dtype) * zs[j][i] for j in range(est.q)) / est.q
            self._set(i, p - self.groups[i]["lr"] * d)


class ReferenceZOAdam(ReferenceOptimizer):
    """Adam / AMSGrad with bias correction written out."""

    def update(self, est: ZOEstimate) -> None:
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est), strict=False)):
            hp, st = self.groups[i], self.state[i]
            b1, b2 = hp["betas"]
            t = int(st.get("t", 0)) + 1
            st["t"] = t  # type: ignore[assignment]
            st["m"] = b1 * st.get("m", torch.zeros_like(g)) + (1 - b1) * g
            st["v"] = b2 * st.get("v", torch.zeros_like(g)) + (1 - b2) * g * g
            v = st["v"]
            if hp["amsgrad"]:
                st["vmax"] = torch.maximum(st.get("vmax", torch.zeros_like(g)), v)
                v = st["vmax"]
            c1 = 1 - b1**t if hp["bias_correction"] else 1.0
            c2 = 1 - b2**t if hp["bias_correction"] else 1.0
            m_hat, v_hat = st["m"] / c1, v / c2
            self._set(i, p - hp["lr"] * m_hat / (torch.sqrt(v_hat) + hp["adam_eps"]))


class ReferenceJaguar(ReferenceOptimizer):
    """JAGUAR memory on the sampled coordinates (``m_i = beta m_i + (1-beta) hat g_i``), then the rule."""

    def update(self, est: ZOEstimate) -> None:
        delta = est.directional_derivatives[0]
        shapes = tuple(p.shape for p in self.params)
        if isinstance(self.family, Coordinate):
            loc, offset = self.family.location(shapes, est.step_seed, 0)
            masks = [torch.zeros(s, dtype=torch.bool).reshape(-1) for s in shapes]
            masks[loc][offset] = True
            masks = [mk.reshape(s) for mk, s in zip(masks, shapes, strict=False)]
            estimates = [torch.full(s, float(delta), dtype=torch.float64) for s in shapes]
        else:
            zs = self.family.materialize(self.params, est.step_seed, 0)
            masks = [z != 0 for z in zs]
            estimates = est.materialize(self.params)  # delta * s_i on the blocks (JaguarBlock docstring)
        for i, p in enumerate(self.params):
            hp, st = self.groups[i], self.state[i]
            dtype = _state_dtype(p)
            m = st.get("m", torch.zeros(p.shape, dtype=dtype))
            new = hp["beta"] * m + (1 - hp["beta"]) * estimates[i].to(dtype)
            st["m"] = torch.where(masks[i], new, m)
            d = literal_rule(hp.get("update", "sign"), st["m"], hp)
            self._set(i, p - hp["lr"] * d)


class ReferenceZOMuon(ReferenceOptimizer):
    """``M = beta M + (1-beta) G`` (or ``G``), ``x <- x - lr rule(M)``."""

    def update(self, est: ZOEstimate) -> None:
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est), strict=False)):
            hp = self.groups[i]
            m = _ema(self.state[i], g, hp["momentum"])
            self._set(i, p - hp["lr"] * literal_rule(hp["update"], m, hp))


class ReferenceMatrixEfficientZOMuon(ReferenceOptimizer):
    """``W <- W - lr sign(c) polar(E)`` with the polar factor of the materialised ``E`` from an SVD."""

    def update(self, est: ZOEstimate) -> None:
        c = est.coefficients[0]
        zs = self.family.materialize(self.params, est.step_seed, 0)
        for i, (p, z) in enumerate(zip(self.params, zs, strict=False)):
            hp = self.groups[i]
            if hp["update"] == "muon":
                d = torch.sign(c) * _svd_polar(z.to(torch.float64))
                if hp["shape_scale"]:
                    d = d * max(1.0, p.shape[0] / (p.numel() // p.shape[0])) ** 0.5
            else:
                d = literal_rule(hp["update"], c * z.to(torch.float64), hp)
            self._set(i, p - hp["lr"] * d)


def _literal_rms_radius(norm: str | Norm, shape: tuple[int, ...]) -> float:
    """``sqrt(n) / ||lmo_1||_F`` for a generic input, written out: 1 for sign, ``sqrt(max(rows, cols))`` for the
    spectral family (all singular values 1), ``sqrt(n)`` for the norms whose LMO has unit Frobenius norm."""
    name = norm if isinstance(norm, str) else norm.name
    n = math.prod(shape)
    if name in ("linf", "sign"):
        return 1.0
    if name.startswith("spectral"):
        return math.sqrt(max(shape[0], n // shape[0]))
    return math.sqrt(n)


class ReferenceZOLMO(ReferenceOptimizer):
    """``m = beta m + (1-beta) g``; ``x <- x + lr_t rho lmo_1(m)`` with ``rho = 1`` (``radii="unit"``) or the
    written-out RMS radius (``radii="rms"``)."""

    def __init__(self, optimizer: ZOOptimizer, params: Sequence[Tensor]) -> None:
        super().__init__(optimizer, params)
        rms = getattr(optimizer, "radii", "unit") == "rms"
        self.rhos = [
            _literal_rms_radius(hp["norm"], tuple(p.shape)) if rms else 1.0
            for hp, p in zip(self.groups, self.params, strict=True)
        ]

    def update(self, est: ZOEstimate) -> None:
        factor = 1.0 if self.lr_schedule is None else float(self.lr_schedule(self.t))
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est), strict=False)):
            hp = self.groups[i]
            m = _ema(self.state[i], g, hp["beta"])
            self._set(i, p + hp["lr"] * factor * self.rhos[i] * literal_lmo(hp["norm"], m))


def _l2(tensors: Sequence[Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors))


class ReferenceDoG(ReferenceOptimizer):
    """ZO-DoG / POEM-style: ``rbar = max(r_eps, max ||x_i - x_0||_2)``, ``G += ||g||_2^2``,
    ``x <- x - lr (rbar / sqrt(G)) g``; for POEM ``mu <- clip(||x_{t+1} - x_t||_2 / 2, floor, mu_0)``."""

    def __init__(self, optimizer: ZOOptimizer, params: Sequence[Tensor]) -> None:
        super().__init__(optimizer, params)
        self.reps_rel = float(optimizer.reps_rel)  # type: ignore[attr-defined]
        self.mu0 = getattr(optimizer, "mu0", None)
        self.mu = optimizer.radius()
        self.x0: list[Tensor] | None = None
        self.rbar = self.G = self.dist = 0.0

    def radius(self) -> float:
        return self.mu

    def update(self, est: ZOEstimate) -> None:
        if self.x0 is None:
            self.x0 = [p.clone() for p in self.params]
            self.rbar = self.reps_rel * (1.0 + _l2(self.x0))
        grads = self.gradient(est)
        self.G += _l2(grads) ** 2
        self.rbar = max(self.rbar, self.dist)
        eta = self.rbar / self.G**0.5
        new = [p - self.groups[i]["lr"] * eta * g for i, (p, g) in enumerate(zip(self.params, grads, strict=False))]
        step_length = _l2([n - p for n, p in zip(new, self.params, strict=False)])
        for i, n in enumerate(new):
            self._set(i, n)
        self.dist = _l2([p - x0 for p, x0 in zip(self.params, self.x0, strict=False)])
        if self.mu0 is not None:
            floor = radius_floor(self.params, self.family, self.mu0)
            self.mu = min(self.mu0, max(floor, 0.5 * step_length))


class ReferenceALIASSign(ReferenceOptimizer):
    """ALIAS Sign-SGD on ``m_t = beta m_{t-1} + (1-beta) g_t`` (``m_0 = g_0``):
    ``L += ||m_{t} - m_{t-1}||_1 / ||x_t - x_{t-1}||_inf``, ``dsum += gamma <g_t, sign(m_{t-1})>``,
    ``d = max(d, dsum)``, ``gamma = sqrt(d / L)``, ``x <- x - lr gamma sign(m_t)``."""

    def __init__(self, optimizer: ZOOptimizer, params: Sequence[Tensor]) -> None:
        super().__init__(optimizer, params)
        self.reps_rel = float(optimizer.reps_rel)  # type: ignore[attr-defined]
        self.m: list[Tensor] | None = None
        self.gamma = self.L = self.dsum = self.d = self.prev_step = 0.0

    def update(self, est: ZOEstimate) -> None:
        grads = self.gradient(est)
        if self.m is None:
            self.gamma = self.reps_rel * (1.0 + max(float(p.abs().max()) for p in self.params))
            self.m = grads
            self.d = self.gamma * sum(float(m.abs().sum()) for m in self.m)
        else:
            beta = [self.groups[i]["momentum"] for i in range(len(grads))]
            new = [b * h + (1 - b) * g for b, h, g in zip(beta, self.m, grads, strict=False)]
            if self.prev_step > 0:
                self.L += sum(float((n - h).abs().sum()) for n, h in zip(new, self.m, strict=False)) / self.prev_step
            self.dsum += self.gamma * sum(float((g * torch.sign(h)).sum()) for g, h in zip(grads, self.m, strict=False))
            self.d = max(self.d, self.dsum)
            if self.L > 0:
                self.gamma = (max(self.d, 0.0) / self.L) ** 0.5
            self.m = new
        steps = [self.groups[i]["lr"] * self.gamma * torch.sign(m) for i, m in enumerate(self.m)]
        self.prev_step = max(float(s.abs().max()) for s in steps)
        for i, (p, s) in enumerate(zip(self.params, steps, strict=False)):
            self._set(i, p - s)


class ReferenceAdaNAGED(ReferenceOptimizer):
    """AdaNAGED (EMA momentum) with every rule written out (``docs/adanaged.md``); the search rules' probe in
    :meth:`step` (one-probe answers, ``"sign"`` or ``"grow"`` below resolution, and the probe-set memory of
    ``"search-adapt"`` / ``"search-adapt-move"`` / ``"search-evidence"``);
    ``m = beta m + (1-beta) g``, ``s_l = lmo_l(m_l)``, ``||m||_* = sum_l <m_l, -s_l>``; DoG:
    ``rbar = max(rbar, max_l ||x_l - x0_l||)``, ``G += (sum_l ||g_l||_*)^2``, ``gamma = rbar ||m||_* / sqrt(G)``;
    ALIAS: ``L += ||m_t - m_{t-1}||_* / ||x_t - x_{t-1}||``, ``dsum += gamma <g_t, -s_{t-1}>``,
    ``gamma = sqrt(max(d, dsum) / L)``; ``x_l <- x_l + lr gamma s_l``;
    ``tau <- clip(rms(x_{t+1} - x_t) / (2 typ(z)), floor, tau_0)``. One step-size unit per tensor when
    ``layerwise``, else one for all. Newton–Schulz blocks: the literal polynomial for the LMO, the realised
    dual ``<g, -NS(g)>`` and the power-iteration spectral norm, as the method defines them."""

    def __init__(self, optimizer: ZOOptimizer, params: Sequence[Tensor]) -> None:
        super().__init__(optimizer, params)
        rule = optimizer.rule  # type: ignore[attr-defined]
        self.search = isinstance(rule, ParabolicSearchRule) and rule.settled in ("clip", "adaptive")
        if optimizer.momentum != "ema" or not (self.search or rule.name in ("dog", "alias")):  # type: ignore[attr-defined]
            raise ValueError(
                "the AdaNAGED reference covers momentum='ema' with the 'dog' or 'alias' rule, or a search rule whose "
                f"settled answer is 'clip' or 'adaptive'; got {rule.name!r}"
            )
        self.opt = optimizer
        self.norms: list[Norm] = list(optimizer.norms)  # type: ignore[attr-defined]
        self.units: list[list[int]] = optimizer.units()  # type: ignore[attr-defined]
        self.tau0 = float(optimizer.tau0)  # type: ignore[attr-defined]
        self.tau = optimizer.radius()
        self.m: list[Tensor] | None = None
        self.x0: list[Tensor] = []
        self.unit_state: list[dict[str, float]] = []
        self.anchor: list[Tensor] = []
        self.since, self.interval, self.verdict, self.settled = 0, 1, 0, False
        self.avg: dict[str, Any] = {"avg": None}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Tensor:
        """Search rules: after the estimate, a probe every ``interval`` steps, written out on whole tensors:
        ``f(x_t), f(x_a), f((x_a + x_t)/2)``, the parabola's ``lambda*``, ``x <- x_a + clip(lambda*, 0, 1)(x_t - x_a)``
        (as ``(2 lam - 1) x_t + (2 - 2 lam) mid``), ``gamma <- gamma * clip(lambda* c_K, 1/4, 4)``; once settled,
        the adaptive rules answer measured probes from the running means when the probes contradict each other
        (``x`` stays at ``x_t`` or, with ``stay=False``, moves as the probe says); then the update."""
        est = estimate_gradient(
            self.params,
            closure,
            self.family,
            step_seed=self.step_seed(),
            q=self.q,
            radius=self.radius(),
            scheme=self.scheme,
        )
        if self.search and self.m is not None and self.since >= self.interval:
            self._probe(closure)
        self.update(est)
        self.t += 1
        self.since += 1
        return est.loss

    def _probe(self, closure: Callable[[], Any]) -> None:
        x_t = [p.clone() for p in self.params]
        mid = [(a.to(p.dtype) + p) * 0.5 for a, p in zip(self.anchor, x_t, strict=False)]
        f1 = float(closure())
        for i, a in enumerate(self.anchor):
            self._set(i, a)
        f0 = float(closure())
        for i, m in enumerate(mid):
            self._set(i, m)
        fh = float(closure())
        tol = 4.0 * torch.finfo(torch.float64).eps * max(abs(f0), abs(fh), abs(f1))
        out = parabolic_probe(f0, fh, f1, tol)
        sq_d = sum(float(((2 * (x - m)) ** 2).sum()) for x, m in zip(x_t, mid, strict=False))
        res = torch.finfo(self.params[0].dtype).eps
        below = (
            out.tie
            and 0.0 < sq_d <= res * sum(float((x**2).sum()) for x in x_t)
            and self.unit_state[0]["gamma"] < res**0.5 * self.unit_state[0]["cap"]
        )
        beta = max(float(g["beta"]) for g in self.groups)
        rule = self.opt.rule  # type: ignore[attr-defined]
        was_settled = self.settled
        factor, verdict = probe_factor(
            out, self.since, beta, below, warm_up=not was_settled, unresolved=rule.unresolved
        )
        self.settled = was_settled or verdict == 0 or (verdict == -1 and self.verdict == 1)
        measured = not (out.tie or out.unresolved) and all(math.isfinite(v) for v in (f0, fh, f1))
        memory = None
        if was_settled and measured and rule.settled == "adaptive":
            located = 0.0 < out.scale < PROBE_FACTOR_MIN
            gamma = self.unit_state[0]["gamma"]
            memory = adaptive_factor(self.avg, (f0, fh, f1), self.since, beta, gamma, verdict, located, rule.evidence)
        lam = 0.0 if verdict == -1 else out.move
        if memory is not None:
            factor, verdict = memory
            lam = 0.0 if verdict == -1 else (1.0 if rule.stay else out.move)
        elif verdict == 0 and not out.tie:
            factor = averaged_factor(
                self.avg, (f0, fh, f1), self.since, beta, self.unit_state[0]["gamma"], factor, self.verdict
            )
        else:
            self.avg["avg"] = None
        for i, (x, m) in enumerate(zip(x_t, mid, strict=False)):
            self._set(i, x if lam == 1.0 else (m if lam == 0.5 else m * (2.0 - 2.0 * lam) + x * (2.0 * lam - 1.0)))
        self.anchor = [p.clone() for p in self.params]
        for st in self.unit_state:
            st["gamma"] = min(st["gamma"] * factor, st["cap"] * (res**0.5 if below else 1.0))
        flip = self.verdict != 0 and self.verdict != verdict
        self.interval = min(2 * self.interval, 32) if (verdict == 0 or flip) else max(1, self.interval // 2)
        self.verdict = verdict
        self.since = 0

    def radius(self) -> float:
        return self.tau

    def _is_ns(self, i: int) -> bool:
        norm = self.norms[i]
        return isinstance(norm.base if isinstance(norm, Scaled) else norm, NewtonSchulzSpectral)

    def _dual(self, i: int, g: Tensor) -> float:
        if self._is_ns(i):
            return float((g * -literal_lmo(self.norms[i], g)).sum())
        return float(self.norms[i].dual_norm(g))

    def _primal(self, i: int, x: Tensor) -> float:
        norm = self.norms[i]
        if not self._is_ns(i):
            return float(norm.norm(x))
        return float(power_spectral_norm(x)) / (norm.rho if isinstance(norm, Scaled) else 1.0)

    def update(self, est: ZOEstimate) -> None:
        grads = self.gradient(est)
        n = len(grads)
        alias = self.opt.rule.name == "alias"  # type: ignore[attr-defined]
        first = self.m is None
        if first:
            self.x0 = [p.clone() for p in self.params]
            self.anchor = [p.clone() for p in self.params]
            for members in self.units:
                r_eps = self.opt.reps_rel * (1.0 + max(float(self.norms[i].norm(self.x0[i])) for i in members))  # type: ignore[attr-defined]
                cap = 1.0 + max(float(self.norms[i].norm(self.x0[i])) for i in members)
                self.unit_state.append(
                    {"rbar": r_eps, "G": 0.0, "gamma": r_eps, "L": 0.0, "dsum": 0.0, "d": 0.0, "cap": cap}
                )
            self.m = [g.clone() for g in grads]
            diff, decrease = [0.0] * n, [0.0] * n
        else:
            old = self.m
            assert old is not None  # set at the first step
            beta = [self.groups[i]["beta"] for i in range(n)]
            self.m = [b * h + (1 - b) * g for b, h, g in zip(beta, old, grads, strict=False)]
            diff = [float(self.norms[i].dual_norm(self.m[i] - old[i])) for i in range(n)]
            decrease = [float((grads[i] * -literal_lmo(self.norms[i], old[i])).sum()) for i in range(n)]
        directions = [literal_lmo(self.norms[i], self.m[i]) for i in range(n)]
        steps: list[Tensor] = [torch.zeros(())] * n
        for st, members in zip(self.unit_state, self.units, strict=False):
            mom_dual = sum(float((self.m[i] * -directions[i]).sum()) for i in members)
            if self.search:
                gamma = st["gamma"]
            elif alias:
                if first:
                    st["d"] = st["gamma"] * mom_dual
                else:
                    if st["prev_step"] > 0:
                        st["L"] += sum(diff[i] for i in members) / st["prev_step"]
                    st["dsum"] += st["gamma"] * sum(decrease[i] for i in members)
                    st["d"] = max(st["d"], st["dsum"])
                    if st["L"] > 0:
                        st["gamma"] = (max(st["d"], 0.0) / st["L"]) ** 0.5
                gamma = st["gamma"]
            else:
                st["rbar"] = max(st["rbar"], max(self._primal(i, self.params[i] - self.x0[i]) for i in members))
                st["G"] += sum(self._dual(i, grads[i]) for i in members) ** 2
                gamma = st["rbar"] / st["G"] ** 0.5 * mom_dual
            for i in members:
                steps[i] = self.groups[i]["lr"] * gamma * directions[i]
            st["prev_step"] = max(float(self.norms[i].norm(steps[i])) for i in members)
        for i, s in enumerate(steps):
            self._set(i, self.params[i] + s)
        dim = sum(p.numel() for p in self.params)
        typ = self.family.typical_entry(dim)
        rms = (sum(float((s.double() ** 2).sum()) for s in steps) / dim) ** 0.5 / typ
        self.tau = min(self.tau0, max(radius_floor(self.params, self.family, self.tau0), 0.5 * rms))


#: Registry-name -> reference class (several registry entries share one).
REFERENCES: dict[str, type[ReferenceOptimizer]] = {
    "zo-sgd": ReferenceZOSGD,
    "zo-signsgd": ReferenceZOSignSGD,
    "zo-sgd-sign": ReferenceZOSGDSign,
    "zo-adam": ReferenceZOAdam,
    "jaguar": ReferenceJaguar,
    "zo-muon": ReferenceZOMuon,
    "zo-muon-orthogonal": ReferenceMatrixEfficientZOMuon,
    "zo-lmo": ReferenceZOLMO,
    "zo-dog": ReferenceDoG,
    "zo-poem": ReferenceDoG,
    "zo-alias-sign": ReferenceALIASSign,
    "adanaged": ReferenceAdaNAGED,
    "adanaged-alias": ReferenceAdaNAGED,
}
