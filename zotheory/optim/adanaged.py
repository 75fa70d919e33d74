r"""AdaNAGED, reconstructed: parameter-free zeroth-order LMO steps with an adaptive smoothing radius.

AdaNAGED (Bystrov, Medyakov, Bylinkin, Beznosikov, arXiv 2606.14970) "unifies gradient-free training,
adaptive tuning, and non-Euclidean update geometry". Only the abstract and the first lines of the paper
could be read (``adanaged_status.md``); the algorithm below is **our reconstruction** from its three named
components, every rule derived in ``docs/adanaged.md`` (sources: DoG, ALIAS, POEM, JAGUAR, Scion/Gluon).
It is not claimed to be the paper's algorithm.

.. math::
    g_t &= \text{two-point ZO estimate at } x_t \text{ with radius } \tau_t
          \quad(\text{Gaussian, or one JAGUAR coordinate}) \\
    m_t &= \beta m_{t-1} + (1-\beta) g_t\ (m_0 = g_0)
          \quad\text{or JAGUAR memory } m_{t,i_t} = \beta m_{t-1,i_t} + (1-\beta)\hat\partial_{i_t} f \\
    s_{t,l} &= \mathrm{lmo}_l(m_{t,l}),\ \|s_{t,l}\|_{(l)} = 1 \quad(\text{per parameter block } l) \\
    \gamma_t &= \text{step-size rule (DoG by default, ALIAS, or any } \texttt{StepSizeRule}) \\
    x_{t+1,l} &= x_{t,l} + \mathrm{lr}\,\gamma_t\, s_{t,l} \\
    \tau_{t+1} &= \mathrm{clip}\big(\tfrac12\,\mathrm{rms}(x_{t+1}-x_t)/\mathrm{typ}(z),\ \tau^{\min}_{t+1},\ \tau_0\big)

Geometry: the product norm ``||x|| = max_l ||x_l||_(l)`` over the parameter blocks (dual
``||g||_* = sum_l ||g_l||_(l),*``; its LMO is the block-wise LMO, oracle 30 — the layer-wise LMO of
Scion/Gluon). One step-size *unit* covers the whole product norm (``layerwise=False``, default) or each
block has its own (``layerwise=True``, L-DoG style).

Step-size rules (pluggable, :class:`StepSizeRule`):

* :class:`DoGRule` (default): DoG (Ivgi, Hinder, Carmon 2023) measured in the primal norm and applied to
  the sharp operator of the momentum, ``gamma_t = rbar_t ||m_t||_* / sqrt(sum_{i<=t} ||g_i||_*^2)``,
  ``rbar_t = max(r_eps, max_{i<=t} ||x_i - x_0||)``;
* :class:`ALIASRule`: ALIAS (Medyakov et al., arXiv 2506.03725) for an arbitrary norm;
* :class:`ConstantRule`: a fixed radius (a tuned ZO-LMO method; baselines and tests).

``||m||_*`` is the *realised* dual value ``<m, -lmo(m)>``: the dual norm for exact LMOs, the value the
step actually sees for Newton–Schulz.

Only initial guesses are arguments: ``reps_rel`` (first step / initial distance ``r_eps = reps_rel (1 +
||x_0||)``, DoG's convention) and ``tau0_rel`` (largest smoothing radius, ``tau_0 typ(z) = tau0_rel (1 +
rms(x_0))``; or ``eps``, the same in absolute units). ``beta`` is a method constant (0.9 for the EMA, 0 —
JAGUAR's replacement memory — for ``momentum="jaguar"``); ``lr`` multiplies ``gamma`` (leave it at 1).

Memory (declared in the registry and measured by :meth:`~zotheory.optim.base.ZOOptimizer.state_bytes`):
the momentum ``m`` (one parameter-sized tensor) and, for rules that need ``||x_t - x_0||`` (DoG), an exact
copy of ``x_0`` (one more; ``x0_dtype=torch.bfloat16`` halves it at the price of a distance floor
``~ eps_bf16 ||x_0||``, which acts like a larger ``r_eps``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from zotheory.directions import Coordinate, DirectionFamily
from zotheory.estimators import ZOEstimate, dtype_resolution, validate_radius
from zotheory.lmo import NewtonSchulzSpectral, Norm, Nuclear, Spectral, get_norm
from zotheory.optim.base import OnNonFinite, ZOOptimizer, _state_dtype, validate_nonnegative, validate_unit_interval
from zotheory.optim.jaguar import jaguar_coordinate_update_
from zotheory.optim.muon import is_hidden_matrix
from zotheory.optim.registry import OptimizerSpec, dense_reference, register_optimizer
from zotheory.policies.base import DirectionPolicy

__all__ = [
    "ALIASRule",
    "AdaNAGED",
    "ConstantRadius",
    "ConstantRule",
    "DoGRule",
    "MOMENTA",
    "RadiusRule",
    "RADIUS_RULES",
    "STEP_RULES",
    "StepStats",
    "StepSizeRule",
    "StepTiedRadius",
    "default_norm_name",
    "power_spectral_norm",
    "get_step_rule",
    "radius_floor",
    "realised_dual",
    "reps_initial_distance",
]

#: Perturbation-to-step ratio of :class:`StepTiedRadius` (derived in ``docs/adanaged.md``: the smoothing
#: bias ``L tau ||z||`` of the estimate equals half the curvature term ``L ||dx||`` of the step).
STEP_TIED_RATIO: float = 0.5


# ------------------------------------------------------------------------------------------- pure formulas
def reps_initial_distance(reps_rel: float, x0_norm: float | Tensor) -> Tensor:
    """DoG's initial movement ``r_eps = reps_rel * (1 + ||x_0||)`` (Ivgi et al. 2023, Sec. 3; ``reps_rel``)."""
    return reps_rel * (1.0 + torch.as_tensor(x0_norm, dtype=torch.float64))


def realised_dual(m: Tensor, s: Tensor) -> Tensor:
    """``<m, -s>`` in float64 for ``s = lmo(m, 1)``: ``||m||_*`` for an exact LMO (oracle 28)."""
    return -(m.double() * s.double()).sum()


def radius_floor(tensors: Sequence[Tensor], family: DirectionFamily, tau0: float) -> float:
    """Smallest smoothing radius AdaNAGED uses: ``sqrt(eps) * max_l max(mean|x_l|, tau0 typ(z))`` per entry.

    A perturbation of size ``r * typ(z)`` keeps about half of the mantissa bits of an entry of size
    ``mean|x|`` (the classical ``sqrt(eps)`` relative finite-difference step), a factor ``eps^(-1/2)`` above
    the hard resolution limit that :func:`zotheory.estimators.check_radius_resolution` enforces; the
    ``tau0 typ(z)`` term gives an absolute floor where ``x = 0``. Returns the radius (divided by ``typ(z)``).
    """
    dim = sum(t.numel() for t in tensors)
    typ = family.typical_entry(dim)
    floor = 0.0
    for t in tensors:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        scale = max(float(t.detach().abs().float().mean()), tau0 * typ)
        floor = max(floor, math.sqrt(dtype_resolution(t.dtype)) * scale)
    return floor / typ


#: Power iterations of :func:`power_spectral_norm` (from a fixed start: deterministic, stateless).
POWER_STEPS: int = 6


def power_spectral_norm(x: Tensor, steps: int = POWER_STEPS) -> Tensor:
    """Lower estimate of ``||x||_op`` (matrix view ``(shape[0], -1)``) by ``steps`` power iterations on
    ``x^T x`` from the all-ones vector: ``||x v_k||`` with ``v_k`` the normalised iterate, in float64 for
    float64 input and float32 otherwise. Exact for rank one; ``<= sigma_1`` always."""
    mat = x.reshape(x.shape[0], -1)
    mat = mat.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    v = torch.ones(mat.shape[1], dtype=mat.dtype, device=mat.device) / math.sqrt(mat.shape[1])
    for _ in range(steps):
        w = mat.mT @ (mat @ v)
        nw = torch.linalg.vector_norm(w)
        v = torch.where(nw > 0, w / torch.where(nw > 0, nw, torch.ones_like(nw)), v)
    return torch.linalg.vector_norm(mat @ v).double()


def default_norm_name(p: Tensor, name: str = "") -> str:
    """Default routing: Newton–Schulz spectral LMO for hidden 2-D matrices (both sides > 1), sign/l-inf otherwise.

    This is Muon's shape rule (``design_anchors.md`` 1.2) plus Muon's name rule: embeddings and the LM head
    (:data:`zotheory.optim.muon.EMBEDDING_NAME_PARTS` in ``name``) go to l-inf, as in Muon and JAGUAR's code
    (a Newton–Schulz of the 50272 x 768 OPT embedding costs more than the forward passes of a step). Pass a
    ``norm`` per parameter group to route otherwise.
    """
    return "spectral_ns" if p.dim() == 2 and min(p.shape) > 1 and is_hidden_matrix(name, p) else "linf"


# ------------------------------------------------------------------------------------------- step-size rules
@dataclass
class StepStats:
    """What the optimizer measured at step ``t`` for one unit (0-d float64 tensors; ``None`` = not needed).

    Attributes:
        mom_dual: ``||m_t||_*`` (realised, :func:`realised_dual`).
        est_dual: ``||g_t||_*`` of the fresh estimate (``"est"``).
        dist: ``||x_t - x_0||`` in the unit's primal norm (rules with ``"dist"`` in ``needs``).
        diff_dual: ``||m_t - m_{t-1}||_*`` (``"diff"``); ``None`` at ``t = 0``.
        prev_step: ``||x_t - x_{t-1}||`` (``"diff"``); ``None`` at ``t = 0``.
        decrease: ``<g_t, -lmo(m_{t-1})>`` with the fresh estimate ``g_t`` (``"decrease"``); ``None`` at ``t = 0``.
    """

    mom_dual: Tensor
    loss: Tensor | None = None
    est_dual: Tensor | None = None
    dist: Tensor | None = None
    diff_dual: Tensor | None = None
    prev_step: Tensor | None = None
    decrease: Tensor | None = None


@runtime_checkable
class StepSizeRule(Protocol):
    """A step-size rule: ``init`` fills a fresh unit state, ``update`` returns the LMO radius ``gamma_t``.

    ``needs`` names the statistics the optimizer must measure: ``"dist"`` (distance from ``x_0``, which
    makes the optimizer keep a copy of ``x_0``), ``"diff"`` (momentum difference and previous step length),
    ``"decrease"`` (inner product of the fresh estimate with the previous direction).
    """

    name: str
    needs: frozenset[str]

    def init(self, state: dict[str, Any], r_eps: Tensor) -> None: ...

    def update(self, state: dict[str, Any], stats: StepStats) -> Tensor: ...


class DoGRule:
    r"""DoG in the primal norm on the momentum's sharp operator (default rule of :class:`AdaNAGED`).

    .. math::
        \bar r_t = \max(r_\epsilon, \max_{i\le t}\|x_i - x_0\|),\quad
        G_t = \sum_{i\le t}\|g_i\|_*^2,\quad
        \gamma_t = \frac{\bar r_t}{\sqrt{G_t}}\,\|m_t\|_*

    i.e. ``x_{t+1} = x_t - eta_t m_t^#`` with DoG's ``eta_t = rbar_t / sqrt(G_t)`` (Ivgi et al. 2023, Eq. 1)
    and the sharp operator ``m^# = -||m||_* lmo(m)`` (``theory_oracles.md`` section 4) of the momentum in
    place of the gradient. ``G`` accumulates the dual norms of the *fresh estimates* ``g_i``
    (``accumulate="estimate"``, default): their zeroth-order noise (the ``d + 2`` of oracle 3) is what DoG's
    denominator must see. Then ``||m||_* / ||g||_* ~ sqrt((1 - beta)/(1 + beta))`` cancels the momentum
    correlation of the random-walk part of the steps, which otherwise inflates ``rbar`` geometrically;
    ``accumulate="momentum"`` (``G = sum ||m_i||_*^2``) shows it: it diverges (``docs/adanaged.md`` 3.3).
    ``gamma_0 = r_eps``. Invariant to ``f -> c f`` (``c > 0``): ``m, g -> c m, c g``, ``G -> c^2 G``,
    ``gamma`` unchanged.
    """

    name = "dog"

    def __init__(self, accumulate: str = "estimate") -> None:
        if accumulate not in ("estimate", "momentum"):
            raise ValueError(f"accumulate must be 'estimate' or 'momentum', got {accumulate!r}")
        self.accumulate = accumulate
        self.needs = frozenset({"dist", "est"}) if accumulate == "estimate" else frozenset({"dist"})

    def init(self, state: dict[str, Any], r_eps: Tensor) -> None:
        state["rbar"] = r_eps.clone()
        state["G"] = torch.zeros_like(r_eps)

    def update(self, state: dict[str, Any], stats: StepStats) -> Tensor:
        if stats.dist is None:
            raise ValueError("DoGRule needs the distance ||x_t - x_0|| (stats.dist)")
        acc = stats.mom_dual if self.accumulate == "momentum" else stats.est_dual
        if acc is None:
            raise ValueError("DoGRule(accumulate='estimate') needs stats.est_dual")
        state["rbar"] = torch.maximum(state["rbar"], stats.dist)
        state["G"] = state["G"] + acc**2
        g = state["G"]
        eta = torch.where(g > 0, state["rbar"] / torch.sqrt(torch.where(g > 0, g, torch.ones_like(g))), torch.zeros_like(g))
        return eta * stats.mom_dual


class ALIASRule:
    r"""ALIAS (Medyakov et al., arXiv 2506.03725) generalised from sign/l-inf to any norm, on the momentum.

    .. math::
        \lambda_t = \Big(\sum_{i<t}\frac{\|m_{i+1}-m_i\|_*}{\|x_{i+1}-x_i\|}\Big)^{-1/2},\quad
        d_t = \max\Big(d_{t-1},\ \sum_{i<t}\gamma_i\langle g_{i+1}, -\mathrm{lmo}(m_i)\rangle\Big),\quad
        \gamma_t = \lambda_t\sqrt{d_t}

    With ``lmo = -sign`` (l-inf) and ``beta = 0`` this is ALIAS's rule verbatim (``adanaged_status.md``).
    Initial values (not given in the sources we could read; ours): ``gamma_0 = r_eps`` and
    ``d_0 = gamma_0 ||m_0||_*``, the decrease the linear model predicts for the first step. While the
    curvature sum is still 0 (only at ``t = 0``, or if the momentum did not change) the previous step is
    kept. The decrease term uses the *fresh* estimate, so it is an unbiased estimate of
    ``<grad f(x_{i+1}), -lmo(m_i)>`` for independent directions. Invariant to ``f -> c f``.
    """

    name = "alias"
    needs = frozenset({"diff", "decrease"})

    def init(self, state: dict[str, Any], r_eps: Tensor) -> None:
        state["gamma"] = r_eps.clone()
        state["Lsum"] = torch.zeros_like(r_eps)
        state["dsum"] = torch.zeros_like(r_eps)
        state["d"] = None
        state["t"] = 0

    def update(self, state: dict[str, Any], stats: StepStats) -> Tensor:
        if state["t"] == 0:
            state["d"] = state["gamma"] * stats.mom_dual
            state["t"] = 1
            return state["gamma"].clone()
        if stats.diff_dual is None or stats.prev_step is None or stats.decrease is None:
            raise ValueError("ALIASRule needs diff_dual, prev_step and decrease after the first step")
        ps = stats.prev_step
        lhat = torch.where(ps > 0, stats.diff_dual / torch.where(ps > 0, ps, torch.ones_like(ps)), torch.zeros_like(ps))
        state["Lsum"] = state["Lsum"] + lhat
        state["dsum"] = state["dsum"] + state["gamma"] * stats.decrease
        state["d"] = torch.maximum(state["d"], state["dsum"])
        lsum = state["Lsum"]
        new = torch.sqrt(torch.clamp(state["d"], min=0.0) / torch.where(lsum > 0, lsum, torch.ones_like(lsum)))
        state["gamma"] = torch.where(lsum > 0, new, state["gamma"])
        state["t"] += 1
        return state["gamma"].clone()


class ConstantRule:
    """``gamma_t = gamma`` for every unit: a fixed-radius ZO-LMO method (baselines, tests)."""

    name = "constant"
    needs: frozenset[str] = frozenset()

    def __init__(self, gamma: float) -> None:
        validate_nonnegative("gamma", gamma)
        self.gamma = float(gamma)

    def init(self, state: dict[str, Any], r_eps: Tensor) -> None:
        state["gamma"] = torch.full_like(r_eps, self.gamma)

    def update(self, state: dict[str, Any], stats: StepStats) -> Tensor:
        return state["gamma"].clone()


STEP_RULES: dict[str, type] = {"dog": DoGRule, "alias": ALIASRule}


def get_step_rule(rule: str | StepSizeRule) -> StepSizeRule:
    """A rule instance from a name in :data:`STEP_RULES` or an object following :class:`StepSizeRule`."""
    if isinstance(rule, str):
        if rule not in STEP_RULES:
            raise ValueError(f"unknown step-size rule {rule!r}; valid: {sorted(STEP_RULES)} or a StepSizeRule")
        return STEP_RULES[rule]()
    if not isinstance(rule, StepSizeRule):
        raise TypeError(f"step_rule must be a name or a StepSizeRule (init/update/needs/name), got {rule!r}")
    return rule


# ------------------------------------------------------------------------------------------- radius rules
@runtime_checkable
class RadiusRule(Protocol):
    """Smoothing-radius rule: ``next(tau_prev, step_rms, floor, tau0) -> tau`` (floats, per entry / typ(z))."""

    name: str

    def next(self, tau_prev: float, step_rms: float, floor: float, tau0: float) -> float: ...


class StepTiedRadius:
    r"""``tau_{t+1} = clip(ratio * rms(x_{t+1} - x_t) / typ(z), floor, tau_0)`` (derivation in the docs).

    The central difference along ``z`` has bias ``<= L tau ||z||^2 / 2`` in the directional derivative, so
    the smoothed gradient is off by ``O(L tau ||z||)`` while the step's own curvature term is
    ``L ||x_{t+1} - x_t||^2 / 2``; equating the bias's contribution to the step with the curvature term
    gives a perturbation of entries half the size of the step's entries (``ratio = 1/2``). The radius
    therefore shrinks with the steps (the bias stays balanced with them), never below ``floor`` (the dtype
    resolution with margin, :func:`radius_floor`) and never above the initial guess ``tau_0``.
    """

    name = "step"

    def __init__(self, ratio: float = STEP_TIED_RATIO) -> None:
        if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"ratio must be finite and > 0, got {ratio!r}")
        self.ratio = float(ratio)

    def next(self, tau_prev: float, step_rms: float, floor: float, tau0: float) -> float:
        return min(tau0, max(floor, self.ratio * step_rms))


class ConstantRadius:
    """``tau_t = tau_0`` (never below the floor): the fixed smoothing radius of MeZO-style methods."""

    name = "constant"

    def next(self, tau_prev: float, step_rms: float, floor: float, tau0: float) -> float:
        return max(floor, tau0)


RADIUS_RULES: dict[str, type] = {"step": StepTiedRadius, "constant": ConstantRadius}


def _get_radius_rule(rule: str | RadiusRule) -> RadiusRule:
    if isinstance(rule, str):
        if rule not in RADIUS_RULES:
            raise ValueError(f"unknown radius rule {rule!r}; valid: {sorted(RADIUS_RULES)} or a RadiusRule")
        return RADIUS_RULES[rule]()
    if not isinstance(rule, RadiusRule):
        raise TypeError(f"radius_rule must be a name or a RadiusRule (next/name), got {rule!r}")
    return rule


# ------------------------------------------------------------------------------------------- the optimizer
def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _resolve_norm(spec: Any, p: Tensor, name: str) -> Norm:
    """The block norm of ``p``: ``spec`` (a name or a :class:`Norm`), or the shape rule when ``None``."""
    if spec is None:
        spec = default_norm_name(p, name)
    if isinstance(spec, Norm):
        norm = spec
    elif isinstance(spec, str):
        norm = get_norm(spec)  # ValueError naming the unknown name and the valid ones
    else:
        raise TypeError(f"norm for {name} must be a name from zotheory.lmo.NORMS or a Norm, got {spec!r}")
    if isinstance(norm, (Spectral, Nuclear, NewtonSchulzSpectral)) and p.dim() < 2:
        raise ValueError(f"norm {norm.name!r} needs a matrix, but {name} has shape {tuple(p.shape)}")
    return norm


MOMENTA: tuple[str, ...] = ("ema", "jaguar")


class AdaNAGED(ZOOptimizer):
    r"""AdaNAGED (our reconstruction; module docstring and ``docs/adanaged.md``).

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter groups; a group may set ``"norm"`` (a name
            of :data:`zotheory.lmo.NORMS` or a :class:`~zotheory.lmo.Norm`), ``"beta"`` and ``"lr"``.
        norm: default norm of groups without one; ``None`` routes by shape (:func:`default_norm_name`:
            Newton–Schulz spectral for matrices, sign/l-inf otherwise).
        step_rule: ``"dog"`` (default), ``"alias"``, or any :class:`StepSizeRule`.
        momentum: ``"ema"`` (Gaussian two-point estimates and an EMA) or ``"jaguar"`` (one coordinate per
            step and the JAGUAR memory of :mod:`zotheory.optim.jaguar`).
        beta: momentum constant in ``[0, 1)``; default 0.9 (EMA) / 0.0 (JAGUAR replacement memory).
        layerwise: one step-size unit per parameter tensor, or (default) one for the product norm.
        reps_rel: initial-distance guess, ``r_eps = reps_rel (1 + ||x_0||)`` (the first step's length).
        tau0_rel: initial (largest) smoothing radius, ``tau_0 typ(z) = tau0_rel (1 + rms(x_0))``.
        eps: ``tau_0`` in absolute units (overrides ``tau0_rel``; the name other ZO methods use).
        radius_rule: ``"step"`` (default, :class:`StepTiedRadius`), ``"constant"`` or a :class:`RadiusRule`.
        lr: multiplier of ``gamma`` (leave it at 1; present for schedulers).
        q: directions per step; directions: family of the EMA estimates (Gaussian by default; JAGUAR always
            uses coordinates). x0_dtype: dtype of the ``x_0`` copy (default: the state dtype).
        seed, on_nonfinite, exact_restore, check_resolution: as :class:`~zotheory.optim.base.ZOOptimizer`.
        policy: a direction policy (:mod:`zotheory.policies`) that supplies ``g_t`` (``momentum="ema"`` only).

    Raises:
        ValueError / TypeError naming the bad argument.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        norm: str | Norm | None = None,
        step_rule: str | StepSizeRule = "dog",
        momentum: str = "ema",
        beta: float | None = None,
        layerwise: bool = False,
        reps_rel: float = 1e-6,
        tau0_rel: float = 1e-3,
        eps: float | None = None,
        radius_rule: str | RadiusRule = "step",
        lr: float = 1.0,
        q: int = 1,
        directions: str | DirectionFamily = "gaussian",
        seed: int = 0,
        on_nonfinite: OnNonFinite = "raise",
        exact_restore: bool = False,
        check_resolution: bool = True,
        x0_dtype: torch.dtype | None = None,
        policy: DirectionPolicy | None = None,
    ) -> None:
        if momentum not in MOMENTA:
            raise ValueError(f"momentum must be one of {list(MOMENTA)}, got {momentum!r}")
        if policy is not None and momentum != "ema":
            raise ValueError(f"a direction policy needs momentum='ema' (JAGUAR memory draws coordinates), got {momentum!r}")
        if beta is None:
            beta = 0.9 if momentum == "ema" else 0.0
        if not isinstance(layerwise, bool):
            raise TypeError(f"layerwise must be a bool, got {layerwise!r}")
        self.reps_rel = _check_positive("reps_rel", reps_rel)
        self.tau0_rel = _check_positive("tau0_rel", tau0_rel)
        if eps is not None:
            validate_radius(eps)
        if x0_dtype is not None and (not isinstance(x0_dtype, torch.dtype) or not x0_dtype.is_floating_point):
            raise TypeError(f"x0_dtype must be a floating torch.dtype, got {x0_dtype!r}")
        if momentum == "jaguar":
            if q != 1:
                raise ValueError(f"momentum='jaguar' samples one coordinate per step (q=1), got q={q!r}")
            directions = Coordinate()
        self.rule = get_step_rule(step_rule)
        self.radius_rule = _get_radius_rule(radius_rule)
        super().__init__(
            params,
            dict(lr=lr, norm=norm, beta=beta),
            eps=1.0 if eps is None else eps,  # replaced below by tau_0
            q=q,
            directions=directions,
            scheme="central",
            seed=seed,
            on_nonfinite=on_nonfinite,
            exact_restore=exact_restore,
            check_resolution=check_resolution,
            policy=policy,
        )
        self.momentum = momentum
        self.layerwise = layerwise
        self.x0_dtype = x0_dtype
        params_ = self.zo_params()
        names = self.zo_param_names()
        self.norms: list[Norm] = [
            _resolve_norm(g["norm"], p, n) for p, g, n in zip(params_, self.zo_param_groups(), names)
        ]
        dim = sum(p.numel() for p in params_)
        self._typ = self.directions.typical_entry(dim)
        if eps is None:
            rms0 = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params_) / max(dim, 1))
            self.tau0 = self.tau0_rel * (1.0 + rms0) / self._typ
        else:
            self.tau0 = float(eps)
        self.eps = self.tau0
        self.state["adanaged"] = {"tau": self.tau0, "units": None}

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        validate_unit_interval("beta", group["beta"])
        names = group.get("param_names")
        for k, p in enumerate(group["params"]):
            _resolve_norm(group["norm"], p, names[k] if names is not None else f"tensor {k} of the group")

    # ------------------------------------------------------------------ configuration
    @property
    def needs_x0(self) -> bool:
        """Whether the rule needs ``||x_t - x_0||`` (then a copy of ``x_0`` is kept)."""
        return "dist" in self.rule.needs

    def radius(self) -> float:
        return float(self.state["adanaged"]["tau"])

    def units(self) -> list[list[int]]:
        """Indices (into :meth:`zo_params`) of the blocks sharing one step size."""
        n = len(self.zo_params())
        return [[i] for i in range(n)] if self.layerwise else [list(range(n))]

    def _init_units(self) -> list[dict[str, Any]]:
        params = self.zo_params()
        units = []
        for members in self.units():
            x0_norm = max(float(self.norms[i].norm(params[i].detach())) for i in members)
            r_eps = reps_initial_distance(self.reps_rel, x0_norm).to(params[members[0]].device)
            state: dict[str, Any] = {}
            self.rule.init(state, r_eps)
            units.append(state)
        return units

    def _dual(self, i: int, g: Tensor) -> Tensor:
        """``||g||_*`` of block ``i``: exact, except for Newton–Schulz blocks, where the realised value
        ``<g, -NS(g)>`` is used (no SVD; within the quintic's band ``[0.68, 1.13]`` of the nuclear norm)."""
        norm = self.norms[i]
        if isinstance(norm, NewtonSchulzSpectral):
            return realised_dual(g, norm.lmo(g, 1.0))
        return norm.dual_norm(g).double()

    def _distance(self, i: int, p: Tensor) -> Tensor:
        """``||x_t - x_0||`` in block ``i``'s norm: exact, except for Newton–Schulz blocks, whose spectral norm
        comes from :data:`POWER_STEPS` power iterations started at the all-ones vector (no SVD, no state; a
        lower estimate of ``sigma_1``, so ``rbar`` errs on the small, safe side)."""
        sd = _state_dtype(p)
        diff = p.detach().to(sd) - self.state[p]["x0"].to(sd)
        norm = self.norms[i]
        if not isinstance(norm, NewtonSchulzSpectral):
            return norm.norm(diff).double()
        return power_spectral_norm(diff)

    # ------------------------------------------------------------------ the step
    def _update(self, est: ZOEstimate) -> None:
        ad = self.state["adanaged"]
        params = self.zo_params()
        groups = self.zo_param_groups()
        first = ad["units"] is None
        if first:
            est.restore_(params)  # r_eps and the x_0 copy from x_0 itself, not from the perturbed point
            ad["units"] = self._init_units()
            if self.needs_x0:
                for p in params:
                    self.state[p]["x0"] = p.detach().to(self.x0_dtype or _state_dtype(p)).clone()
        needs = self.rule.needs
        want_diff = "diff" in needs and not first
        want_dec = "decrease" in needs and not first
        n = len(params)
        zero = torch.zeros((), dtype=torch.float64, device=params[0].device)
        mom_dual: list[Tensor] = [zero] * n
        est_dual: list[Tensor] = [zero] * n
        diff_dual: list[Tensor] = [zero] * n
        decrease: list[Tensor] = [zero] * n
        directions: list[Tensor | None] = [None] * n

        if self.momentum == "ema":
            for i, p, group, g in self.dense_estimates(est):
                st = self.state[p]
                if "est" in needs:
                    est_dual[i] = self._dual(i, g)
                m = st.get("m")
                if m is None:
                    m = st["m"] = g.clone()
                else:
                    if want_dec:
                        decrease[i] = realised_dual(g, self.norms[i].lmo(m, 1.0))
                    if want_diff:
                        diff_dual[i] = self.norms[i].dual_norm((g - m).mul_(1.0 - group["beta"])).double()
                    m.mul_(group["beta"]).add_(g, alpha=1.0 - group["beta"])
                directions[i] = self.norms[i].lmo(m, 1.0)
                mom_dual[i] = realised_dual(m, directions[i])
        else:
            est.restore_(params)  # a single entry: cheap
            self._jaguar_memory(est, params, groups, needs, want_diff, want_dec, est_dual, diff_dual, decrease)
            for i, p in enumerate(params):
                directions[i] = self.norms[i].lmo(self.state[p]["m"], 1.0)
                mom_dual[i] = realised_dual(self.state[p]["m"], directions[i])

        sq_step = 0.0
        for unit, members in zip(ad["units"], self.units()):
            # the unit's product norm: primal = max over its blocks, dual = sum (oracle 30)
            stats = StepStats(mom_dual=torch.stack([mom_dual[i] for i in members]).sum(), loss=est.loss)
            if "est" in needs:
                stats.est_dual = torch.stack([est_dual[i] for i in members]).sum()
            if "dist" in needs:
                stats.dist = torch.stack([self._distance(i, params[i]) for i in members]).amax()
            if want_diff:
                stats.diff_dual = torch.stack([diff_dual[i] for i in members]).sum()
                stats.prev_step = unit["prev_step"]
            if want_dec:
                stats.decrease = torch.stack([decrease[i] for i in members]).sum()
            gamma = torch.as_tensor(self.rule.update(unit, stats), dtype=torch.float64)
            unit["last_gamma"] = gamma.detach().clone()
            step_norms = []
            for i in members:
                p, s = params[i], directions[i]
                assert s is not None
                s.mul_((gamma * groups[i]["lr"]).to(device=s.device, dtype=s.dtype))
                sq_step += float(s.double().pow(2).sum())
                if "diff" in needs:
                    step_norms.append(self.norms[i].norm(s).double())
                p.add_(s.to(p.dtype))
                directions[i] = None
            if "diff" in needs:
                unit["prev_step"] = torch.stack(step_norms).amax()
        dim = sum(p.numel() for p in params)
        step_rms = math.sqrt(sq_step / max(dim, 1)) / self._typ
        floor = radius_floor(params, self.directions, self.tau0)
        ad["tau"] = float(self.radius_rule.next(ad["tau"], step_rms, floor, self.tau0))

    def _jaguar_memory(
        self,
        est: ZOEstimate,
        params: list[Tensor],
        groups: list[dict[str, Any]],
        needs: frozenset[str],
        want_diff: bool,
        want_dec: bool,
        est_dual: list[Tensor],
        diff_dual: list[Tensor],
        decrease: list[Tensor],
    ) -> None:
        """JAGUAR memory on the drawn coordinate ``i``: ``m_i <- beta m_i + (1 - beta) hat g_i`` with the central
        difference ``hat g_i`` (arXiv 2506.04430, Alg. 1 line 8, via
        :func:`zotheory.optim.jaguar.jaguar_coordinate_update_`). The fresh estimate is ``d hat g_i e_i``
        (unbiased for the coordinate finite-difference vector), so its dual norm in any of our block norms
        is ``d |hat g_i|`` (a 1-sparse tensor has all its norms equal to its entry's absolute value); DoG counts
        it ``d`` times (its lifetime in the memory)."""
        for p in params:
            st = self.state[p]
            if "m" not in st:
                st["m"] = torch.zeros(p.shape, dtype=_state_dtype(p), device=p.device)
        shapes = tuple(p.shape for p in params)
        dim = sum(p.numel() for p in params)
        i, offset = self.directions.location(shapes, est.step_seed, 0)  # type: ignore[attr-defined]
        m = self.state[params[i]]["m"]
        dd = est.directional_derivatives[0]
        if "est" in needs:
            # the fresh estimate d hat g_i e_i stays in the memory for ~d steps (the refresh interval of a
            # coordinate): count it over that lifetime, ||g||_*^2 * d, so that DoG's denominator bounds the
            # stale (lagged) movement as the EMA's noise does for the Gaussian momentum (docs, "JAGUAR lag")
            est_dual[i] = (dim * dd.double()).abs() * math.sqrt(dim)
        if want_dec:
            s_old = self.norms[i].lmo(m, 1.0).reshape(-1)
            decrease[i] = -(dim * dd.double()) * s_old[offset].double()
        old = m.view(-1)[offset].clone()
        jaguar_coordinate_update_(m, offset, dd, groups[i]["beta"])
        if want_diff:
            diff_dual[i] = (m.view(-1)[offset] - old).abs().double()

    # ------------------------------------------------------------------ bookkeeping
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # torch keeps non-parameter entries by reference: own a deep copy of the rule states
        self.state["adanaged"] = copy.deepcopy(self.state["adanaged"])

    def step_sizes(self) -> list[float]:
        """The last ``gamma_t`` of every unit (for logging); empty before the first step."""
        units = self.state["adanaged"]["units"]
        return [] if units is None else [float(u["last_gamma"]) for u in units if "last_gamma" in u]


def _adanaged_state_multiple(config: Any) -> float:
    """Declared state: the momentum / memory ``m`` plus the ``x_0`` copy when the rule needs distances."""
    rule = get_step_rule(config.get("step_rule", "dog"))
    x0 = 1.0 if "dist" in rule.needs else 0.0
    if "dist" in rule.needs and config.get("x0_dtype") is not None:
        x0 = 0.5 if config["x0_dtype"] in (torch.float16, torch.bfloat16) else x0
    return 1.0 + x0


register_optimizer(
    OptimizerSpec(
        name="adanaged",
        factory=AdaNAGED,
        evals_per_step=lambda c: 2 * int(c.get("q", 1)),
        state_multiple=_adanaged_state_multiple,
        test_config={"lr": 1.0, "reps_rel": 1e-3, "eps": 1e-3},
        reference=dense_reference("adanaged"),
        description="AdaNAGED (reconstruction): ZO momentum + block LMO + DoG-type parameter-free step, "
        "step-tied smoothing (arXiv 2606.14970 components)",
    )
)
register_optimizer(
    OptimizerSpec(
        name="adanaged-alias",
        factory=lambda params, step_rule="alias", **c: AdaNAGED(params, step_rule=step_rule, **c),
        evals_per_step=lambda c: 2 * int(c.get("q", 1)),
        state_multiple=lambda c: 1.0,
        test_config={"lr": 1.0, "reps_rel": 1e-2, "eps": 1e-3},
        reference=dense_reference("adanaged-alias"),
        description="AdaNAGED with the ALIAS-type step-size rule (generalised to any norm)",
    )
)
