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

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from zotheory.directions import Coordinate, mix_seed
from zotheory.estimators import ZOEstimate, estimate_gradient
from zotheory.lmo import CUBIC, MUON_QUINTIC, NS_EPS, NewtonSchulzSpectral, Norm, get_norm
from zotheory.optim.base import ZOOptimizer, _state_dtype, is_no_decay_name

__all__ = ["REFERENCES", "ReferenceOptimizer", "literal_lmo", "literal_newton_schulz", "literal_rule"]


# ---------------------------------------------------------------------------------------------- formulas
def literal_newton_schulz(g: Tensor, coefficients: Sequence[float], steps: int, eps: float = NS_EPS) -> Tensor:
    """``X_0 = G / (||G||_F + eps)``, ``X <- sum_k c_k (X X^T)^k X`` (oracle 32), on the ``(rows, -1)`` view."""
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
    """``argmin_{||s|| <= 1} <m, s>`` written out for the common norms (section 4 table of
    ``theory_oracles.md``); other norms fall back to :mod:`zotheory.lmo`."""
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
        if len(params) != len(fast) or any(p.shape != f.shape for p, f in zip(params, fast)):
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

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Tensor:
        est = estimate_gradient(
            self.params, closure, self.family, step_seed=self.step_seed(), q=self.q, radius=self.eps, scheme=self.scheme
        )
        self.update(est)
        self.t += 1
        return est.loss

    def gradient(self, est: ZOEstimate) -> list[Tensor]:
        """Dense ``g_hat`` in the state dtypes."""
        return [g.to(_state_dtype(p)) for g, p in zip(est.materialize(self.params), self.params)]

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
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est))):
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
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est))):
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
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est))):
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
            masks = [mk.reshape(s) for mk, s in zip(masks, shapes)]
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
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est))):
            hp = self.groups[i]
            m = _ema(self.state[i], g, hp["momentum"])
            self._set(i, p - hp["lr"] * literal_rule(hp["update"], m, hp))


class ReferenceMatrixEfficientZOMuon(ReferenceOptimizer):
    """``W <- W - lr sign(c) polar(E)`` with the polar factor of the materialised ``E`` from an SVD."""

    def update(self, est: ZOEstimate) -> None:
        c = est.coefficients[0]
        zs = self.family.materialize(self.params, est.step_seed, 0)
        for i, (p, z) in enumerate(zip(self.params, zs)):
            hp = self.groups[i]
            if hp["update"] == "muon":
                d = torch.sign(c) * _svd_polar(z.to(torch.float64))
                if hp["shape_scale"]:
                    d = d * max(1.0, p.shape[0] / (p.numel() // p.shape[0])) ** 0.5
            else:
                d = literal_rule(hp["update"], c * z.to(torch.float64), hp)
            self._set(i, p - hp["lr"] * d)


class ReferenceZOLMO(ReferenceOptimizer):
    """``m = beta m + (1-beta) g``; ``x <- x + lr_t lmo_1(m)``."""

    def update(self, est: ZOEstimate) -> None:
        factor = 1.0 if self.lr_schedule is None else float(self.lr_schedule(self.t))
        for i, (p, g) in enumerate(zip(self.params, self.gradient(est))):
            hp = self.groups[i]
            m = _ema(self.state[i], g, hp["beta"])
            self._set(i, p + hp["lr"] * factor * literal_lmo(hp["norm"], m))


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
}
