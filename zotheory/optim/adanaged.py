r"""AdaNAGED, reconstructed: parameter-free zeroth-order LMO steps with an adaptive smoothing radius.

AdaNAGED (Bystrov, Medyakov, Bylinkin, Beznosikov, arXiv 2606.14970) "unifies gradient-free training,
adaptive tuning, and non-Euclidean update geometry". Only the abstract and the first lines of the paper
could be read (``docs/theory.md`` §7); the algorithm below is **our reconstruction** from its three named
components, every rule derived in ``docs/adanaged.md``. It is not claimed to be the paper's algorithm.

.. math::
    g_t &= \text{two-point ZO estimate at } x_t \text{ with radius } \tau_t
          \quad(\text{Gaussian, or one JAGUAR coordinate}) \\
    m_t &= \beta m_{t-1} + (1-\beta) g_t\ (m_0 = g_0)
          \quad\text{or JAGUAR memory } m_{t,i_t} = \beta m_{t-1,i_t} + (1-\beta)\hat\partial_{i_t} f \\
    s_{t,l} &= \mathrm{lmo}_l(m_{t,l}),\ \|s_{t,l}\|_{(l)} = 1 \quad(\text{per parameter block } l) \\
    \gamma_t &= \text{step-size rule (function-value search by default, DoG, ALIAS, or any } \texttt{StepSizeRule}) \\
    x_{t+1,l} &= x_{t,l} + \mathrm{lr}\,\gamma_t\, s_{t,l} \\
    \tau_{t+1} &= \mathrm{clip}\big(\tfrac12\,\mathrm{rms}(x_{t+1}-x_t)/\mathrm{typ}(z),\
        \tau^{\min}_{t+1},\ \tau_0\big)

Geometry: the product norm ``||x|| = max_l ||x_l||_(l)`` over the parameter blocks (dual
``||g||_* = sum_l ||g_l||_(l),*``; its LMO is the block-wise LMO, ``docs/theory.md`` §5.30 — the layer-wise
LMO of Scion/Gluon). One step-size *unit* covers the whole product norm (``layerwise=False``, default) or each
block has its own (``layerwise=True``).

Step-size rules (pluggable, :class:`StepSizeRule`):

* :class:`ParabolicSearchRule` (``"search"`` and its variants; the default is :data:`DEFAULT_STEP_RULE`,
  ``"search-adapt-move"``): the step size is driven by **function values**. Every
  ``K`` steps (``K = 1, 2, 4, ..., 32``, adapted) a *probe* evaluates, on the batch of the current step (which
  chose none of the probed steps), the loss at the anchor ``x_a`` (the point of the previous probe), at the
  midpoint and at ``x_t``; the parabola through these three values along the displacement ``D = x_t - x_a``
  gives the best multiple ``lambda*`` of ``D``. The iterate moves back to ``x_a + lambda* D`` when
  ``1/4 <= lambda* < 1`` (to ``x_a`` when ``lambda* < 1/4``), and ``gamma`` is multiplied by
  ``clip(lambda* c_K, 1/4, 4)``, where
  ``c_K = Var(sum_{t<K} m_t) / (K sigma^2)`` (:func:`momentum_correction`) removes the bias that the
  correlation of the momentum's consecutive steps gives a short displacement. 3 extra evaluations per probe;
  derivation and evidence in ``docs/adanaged.md`` §3.0. Once the probes settle, ``"search-adapt-move"`` answers
  them from running means of their normalised slope and curvature whenever consecutive probes contradict each
  other (noise), with a memory set by how often they do (:func:`probe_memory`, :func:`adaptive_factor`); on
  exact probes it is ``"search"`` with a growth answer to a curvature below the loss's resolution
  (``docs/adanaged.md`` §3.0 and §6.7);
* :class:`DoGRule`: DoG (Ivgi, Hinder, Carmon 2023) measured in the primal norm and applied to
  the sharp operator of the momentum, ``gamma_t = rbar_t ||m_t||_* / sqrt(sum_{i<=t} ||g_i||_*^2)``,
  ``rbar_t = max(r_eps, max_{i<=t} ||x_i - x_0||)`` (the previous default; its O(d) warm-up is documented);
* :class:`ALIASRule`: ALIAS (Medyakov et al., arXiv 2506.03725) for an arbitrary norm;
* :class:`ConstantRule`: a fixed radius (a tuned ZO-LMO method; baselines and tests).

``||m||_*`` is the *realised* dual value ``<m, -lmo(m)>``: the dual norm for exact LMOs, the value the
step actually sees for Newton–Schulz.

Only initial guesses are arguments: ``reps_rel`` (the first step ``r_eps = reps_rel (1 + ||x_0||)``, DoG's
convention) and ``tau0_rel`` (largest smoothing radius, ``tau_0 typ(z) = tau0_rel (1 + rms(x_0))``; or ``eps``,
the same in absolute units). ``beta`` is a method constant (0.9 for the EMA, 0 — JAGUAR's replacement memory —
for ``momentum="jaguar"``); ``lr`` multiplies ``gamma`` (leave it at 1; schedulers scale it).

Memory (declared in the registry and measured by :meth:`~zotheory.optim.base.ZOOptimizer.state_bytes`):
the momentum ``m`` (one parameter-sized tensor) and one more parameter-sized copy: the probe's anchor
(``"search"``, in the parameters' dtype) or ``x_0`` (DoG; ``x0_dtype=torch.bfloat16`` halves it at the price
of a distance floor ``~ eps_bf16 ||x_0||``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, Unpack, runtime_checkable

import torch
from torch import Tensor

from zotheory.directions import Coordinate
from zotheory.estimators import NonFiniteLossError, ZOEstimate, as_loss, dtype_resolution, validate_radius
from zotheory.lmo import (
    NewtonSchulzSpectral,
    Norm,
    Nuclear,
    Scaled,
    Spectral,
    block_lmos,
    get_norm,
    rms_radius,
    unscaled,
)
from zotheory.optim.base import (
    ZOOptimizer,
    _state_dtype,
    validate_nonnegative,
    validate_unit_interval,
)
from zotheory.optim.config import RadiusFreeOptions
from zotheory.optim.jaguar import jaguar_coordinate_update_
from zotheory.optim.measures import power_spectral_norm, radius_floor, reps_initial_distance
from zotheory.optim.muon import NS_BATCH_BUDGET, is_hidden_matrix

__all__ = [
    "DEFAULT_STEP_RULE",
    "ALIASRule",
    "AdaNAGED",
    "ConstantRadius",
    "ConstantRule",
    "DoGRule",
    "MOMENTA",
    "ParabolicSearchRule",
    "RADII",
    "ProbeOutcome",
    "RadiusRule",
    "RADIUS_RULES",
    "STEP_RULES",
    "StepStats",
    "StepSizeRule",
    "StepTiedRadius",
    "SETTLED_ANSWERS",
    "UNRESOLVED_ANSWERS",
    "block_norms",
    "default_norm_name",
    "get_step_rule",
    "ema_sum_variance",
    "momentum_correction",
    "averaged_factor",
    "mean_factor",
    "normalised_slope_curvature",
    "parabolic_probe",
    "probe_factor",
    "realised_dual",
    "step_size_summary",
]

#: Perturbation-to-step ratio of :class:`StepTiedRadius` (derived in ``docs/adanaged.md``: the smoothing
#: bias ``L tau ||z||`` of the estimate equals half the curvature term ``L ||dx||`` of the step).
STEP_TIED_RATIO: float = 0.5


# ------------------------------------------------------------------------------------------- pure formulas
def realised_dual(m: Tensor, s: Tensor) -> Tensor:
    """``<m, -s>`` in float64 for ``s = lmo(m, 1)``: ``||m||_*`` for an exact LMO (docs/theory.md §5.28)."""
    return -(m.double() * s.double()).sum()


def default_norm_name(p: Tensor, name: str = "") -> str:
    """Default routing: Newton–Schulz spectral LMO for hidden 2-D matrices (both sides > 1), sign/l-inf otherwise.

    This is Muon's shape rule (``docs/theory.md`` §4.4) plus Muon's name rule: embeddings and the LM head
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
    and the sharp operator ``m^# = -||m||_* lmo(m)`` (``docs/theory.md`` §4.2) of the momentum in
    place of the gradient. ``G`` accumulates the dual norms of the *fresh estimates* ``g_i``
    (``accumulate="estimate"``, default): their zeroth-order noise (the ``d + 2`` of ``docs/theory.md`` §5.3) is
    what DoG's denominator must see. Then ``||m||_* / ||g||_* ~ sqrt((1 - beta)/(1 + beta))`` cancels the momentum
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
        eta = torch.where(
            g > 0, state["rbar"] / torch.sqrt(torch.where(g > 0, g, torch.ones_like(g))), torch.zeros_like(g)
        )
        return eta * stats.mom_dual


class ALIASRule:
    r"""ALIAS (Medyakov et al., arXiv 2506.03725) generalised from sign/l-inf to any norm, on the momentum.

    .. math::
        \lambda_t = \Big(\sum_{i<t}\frac{\|m_{i+1}-m_i\|_*}{\|x_{i+1}-x_i\|}\Big)^{-1/2},\quad
        d_t = \max\Big(d_{t-1},\ \sum_{i<t}\gamma_i\langle g_{i+1}, -\mathrm{lmo}(m_i)\rangle\Big),\quad
        \gamma_t = \lambda_t\sqrt{d_t}

    With ``lmo = -sign`` (l-inf) and ``beta = 0`` this is ALIAS's rule verbatim (``docs/theory.md`` §7).
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


# ------------------------------------------------------------------------------------- function-value search
#: Bounds of the factor one probe applies to ``gamma`` (a probe at most quadruples or quarters the step).
PROBE_FACTOR_MIN: float = 0.25
PROBE_FACTOR_MAX: float = 4.0
#: Largest growth per probe once the warm-up is over: growth verdicts at the noise floor are mostly the batch's
#: noise, so after the warm-up the step grows at most 2x per probe (and still shrinks at once).
PROBE_SETTLED_GROWTH: float = 2.0
#: Smallest factor when the parabola locates its optimum (``lambda* > 0``): an overshoot is cut at once, while a
#: probe that finds no descent at all (``lambda* = 0``, which noise can cause) divides by 4 only.
PROBE_SHRINK_MIN: float = 1.0 / 64.0
#: Weight of a new probe in the running averages of the normalised slope and curvature (a memory of ~3 probes).
PROBE_AVERAGE_WEIGHT: float = 0.3
#: Longest interval between two probes, in steps (the interval starts at 1 and doubles while probes agree).
PROBE_INTERVAL_MAX: int = 32
#: Closure calls of one probe: the loss at the anchor, at the midpoint and at the current point.
PROBE_EVALS: int = 3
#: Settled answers to a probe whose curvature is below the loss's resolution (:func:`probe_factor`).
UNRESOLVED_ANSWERS: tuple[str, ...] = ("sign", "grow")
#: Settled answers to a probe that measured a curvature: each probe clipped on its own, or the running means.
SETTLED_ANSWERS: tuple[str, ...] = ("clip", "mean", "adaptive", "track")
#: Smallest weight of a new probe in the running means of ``settled="mean"`` (a memory of ~10 probes).
PROBE_MEAN_WEIGHT_MIN: float = 0.1
#: Smallest weight of a new probe in the running means of ``settled="adaptive"`` (a memory of ~16 probes), reached
#: after four contradicting verdicts in a row.
PROBE_ADAPTIVE_WEIGHT_MIN: float = 1.0 / 16.0
#: Factor of one step of ``"search-track"`` (:func:`tracking_factor`): up or down, the same in ``log gamma``.
PROBE_TRACK_STEP: float = math.sqrt(2.0)
#: Spreads of the earlier probes' slopes by which one probe's slope must exceed their mean to be answered alone
#: under ``"search-guard"`` (:func:`probe_memory`).
PROBE_OUTLIER_Z: float = 3.0
#: Standard errors by which the running mean slope of ``"search-evidence"`` must differ from 0 before its sign
#: decides (a one-sided false-alarm probability of 2.3% per probe for a normal mean).
PROBE_EVIDENCE_Z: float = 2.0


def ema_sum_variance(k: int, beta: float) -> float:
    r"""``Var(sum_{t<k} m_t) / sigma^2`` for the EMA ``m_t = beta m_{t-1} + (1-beta) n_t`` of independent
    zero-mean estimates ``n_t`` of variance ``sigma^2``, started from its stationary law
    (``Var m = sigma^2 (1-beta)/(1+beta)``).

    .. math::
        \sum_{t<k} m_t = \frac{\beta(1-\beta^k)}{1-\beta} m_{-1} + \sum_{j=0}^{k-1}(1-\beta^{k-j}) n_j
        \quad\Rightarrow\quad
        \frac{\mathrm{Var}}{\sigma^2} = \Big(\frac{\beta(1-\beta^k)}{1-\beta}\Big)^2\frac{1-\beta}{1+\beta}
        + \sum_{i=1}^{k}(1-\beta^i)^2

    (derived in ``docs/adanaged.md`` §3.0). ``beta = 0`` gives ``k``; ``k = 1`` gives ``(1-beta)/(1+beta)``.
    """
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    validate_unit_interval("beta", beta)
    head = (beta * (1.0 - beta**k) / (1.0 - beta)) ** 2 * (1.0 - beta) / (1.0 + beta) if beta > 0 else 0.0
    return head + sum((1.0 - beta**i) ** 2 for i in range(1, k + 1))


def momentum_correction(k: int, beta: float) -> float:
    r"""``c_k = Var(sum_{t<k} m_t) / (k sigma^2)`` (:func:`ema_sum_variance`): the factor that turns the best
    multiple of a ``k``-step displacement into the best constant step.

    In the noise-dominated regime of ZO (coherence ``~ 1/sqrt(d)``) the displacement ``D`` of ``k`` normalised
    steps of length ``gamma`` has a coherent part ``k gamma g / sigma_m`` and a noise part of variance
    ``gamma^2 Var(sum m_t) / sigma_m^2``, so the parabola's optimum along ``D`` is
    ``lambda* gamma ∝ k / Var(sum m_t)``: ``1/c_k`` times its long-run (``k -> inf``) value, which is the optimum
    of a constant step. ``c_k -> 1`` as ``k -> inf``; ``c_1 = (1-beta)/(1+beta)`` (1/19 at ``beta = 0.9``).
    """
    return ema_sum_variance(k, beta) / k


@dataclass(frozen=True)
class ProbeOutcome:
    """What three function values along ``D`` say (:func:`parabolic_probe`).

    Attributes:
        scale: best multiple ``lambda*`` of the displacement (``inf``: still descending with no upward curvature;
            ``0``: no multiple in ``(0, 1]`` decreases the loss); ``nan`` for a tie.
        move: where to put the iterate, as a multiple of ``D`` from the anchor, in ``[0, 1]``.
        tie: the three values agree to within the loss's resolution: they carry no information.
        magnitude: ``|b / a|``, the length scale of the curvature along ``D`` whichever way ``D`` pointed (``inf``
            without upward curvature); used until the first in-band probe (:func:`probe_factor`).
        unresolved: the values differ, but their second difference is below the loss's resolution: the curvature
            along ``D`` is too small to be seen at all (as opposed to measured and found non-positive).
    """

    scale: float
    move: float
    tie: bool
    magnitude: float = math.nan
    unresolved: bool = False


def parabolic_probe(f0: float, fh: float, f1: float, tol: float) -> ProbeOutcome:
    r"""The parabola through ``phi(0) = f0``, ``phi(1/2) = fh``, ``phi(1) = f1``.

    Here ``phi(lambda) = f(x_a + lambda D)``; non-finite values count as ``+inf``:

    .. math::
        a = 4\,(f_1 - 2 f_h + f_0) = \phi'',\quad b = f_1 - f_0 - a/2 = \phi'(0),\quad \lambda^* = -b/a \ (a > 0)

    (the 3-point second difference of HiZOO, arXiv 2402.15173, Eq. 4, along the actual displacement instead of a
    random direction; the 1-D step of random pursuit, Stich, Müller, Gärtner, SIAM J. Optim. 23(2), 2013).
    Without upward curvature, or with a second difference below ``tol`` (the loss's resolution), the probe says
    "grow" (``inf``) if ``f1`` is the lowest value (``f1 < f0`` for an unresolved curvature), else "shrink" (``0``)
    and goes back to the anchor (also when a value is non-finite). The move is ``clip(lambda*, 0, 1)``: never
    beyond ``x_t``; when
    ``lambda* < 1/4`` it is ``0`` (the anchor): on a minibatch the slope's noise ``<grad F - grad f, D>`` grows with
    ``||D||``, and after a step far too long it would otherwise pick a point in a random direction along ``D``.
    """
    vals = [v if math.isfinite(v) else math.inf for v in (f0, fh, f1)]
    f0, fh, f1 = vals
    finite = all(math.isfinite(v) for v in vals)
    if finite and max(abs(f1 - f0), abs(fh - f0)) <= tol:
        return ProbeOutcome(math.nan, 1.0, True)
    if finite:
        a = 4.0 * (f1 - 2.0 * fh + f0)
        b = f1 - f0 - a / 2.0
        if abs(f1 - 2.0 * fh + f0) <= tol:  # the curvature is below the loss's resolution: the step is short
            if f1 < f0:
                return ProbeOutcome(math.inf, 1.0, False, math.inf, unresolved=True)
            return ProbeOutcome(0.0, 0.0, False, math.inf, unresolved=True)
        if a > 0:
            lam = max(-b / a, 0.0)
            # a step far too long (lambda* < 1/4): back to the anchor, not to a point that a noisy slope chose
            return ProbeOutcome(lam, 0.0 if lam < PROBE_FACTOR_MIN else min(lam, 1.0), False, abs(b / a))
        if f1 < f0 and f1 <= fh:
            return ProbeOutcome(math.inf, 1.0, False, math.inf)
        return ProbeOutcome(0.0, 0.0, False, math.inf)
    return ProbeOutcome(0.0, 0.0, False, 0.0)


def probe_factor(
    outcome: ProbeOutcome,
    k: int,
    beta: float,
    below_resolution: bool,
    warm_up: bool = False,
    unresolved: str = "sign",
) -> tuple[float, int]:
    """``(factor, verdict)``: the multiplier of ``gamma`` after a probe of a ``k``-step displacement, and the verdict
    ``+1`` (clipped at :data:`PROBE_FACTOR_MAX`: grow), ``-1`` (clipped at :data:`PROBE_FACTOR_MIN`: shrink) or ``0``
    (strictly inside: the step is about right).

    ``factor = clip(lambda* c_k, 1/4, 4)`` (:func:`momentum_correction`; ``beta = 0`` for memories whose steps are
    not an EMA of independent estimates). A tie quadruples ``gamma`` while the displacement is below the
    parameters' resolution (the loss cannot see it yet) and keeps it otherwise (a flat or saturated loss must not
    make the step run away).

    After the warm-up a growth verdict multiplies by at most :data:`PROBE_SETTLED_GROWTH`.
    During the warm-up (``warm_up``: no probe has yet landed inside the band) the scale is ``outcome.magnitude``
    instead of ``lambda*``: far below the curvature scale the slope on a minibatch is mostly noise, and its sign (which
    decides between ``lambda* = 0`` and a large ``lambda*``) says nothing about the step's size, while ``|b / a|``
    does. Afterwards the signed ``lambda*`` is used: at the noise floor a longer step raises ``f`` even where the
    curvature is small, and only the sign of the (averaged) slope shows it.

    ``unresolved`` is the settled answer to a probe whose curvature is below the loss's resolution
    (``outcome.unresolved``; :data:`UNRESOLVED_ANSWERS`): ``"sign"`` (default) grows or shrinks by
    :data:`PROBE_SETTLED_GROWTH` with the sign of the slope, like a probe that measured no upward curvature;
    ``"grow"`` grows whatever the slope. The derivation of ``"grow"`` (``docs/adanaged.md`` §3.0, "Curvature below
    resolution"): on a quadratic the second difference is ``D^T H D / 4``, and a tuned step makes it comparable with
    the decrease it buys, so a second difference below ``4 eps |f|`` means that ``gamma`` is short of the curvature
    scale, whichever sign the batch's slope had. Growth stops where the curvature becomes visible, and the
    parabola takes over.
    """
    if unresolved not in UNRESOLVED_ANSWERS:
        raise ValueError(f"unresolved must be one of {list(UNRESOLVED_ANSWERS)}, got {unresolved!r}")
    if warm_up and not outcome.tie and outcome.magnitude > 0:
        outcome = replace(outcome, scale=outcome.magnitude)
    if not warm_up and outcome.unresolved and unresolved == "grow":
        return PROBE_SETTLED_GROWTH, 1
    if not warm_up and not outcome.tie and outcome.magnitude == math.inf:
        # no curvature seen: only the slope's sign is left, a coin where the batch noise dominates, so the answer
        # is symmetric (x2 / /2: no drift of log gamma under pure noise)
        return (PROBE_SETTLED_GROWTH, 1) if outcome.scale == math.inf else (1.0 / PROBE_SETTLED_GROWTH, -1)
    if outcome.tie:
        return (PROBE_FACTOR_MAX, 1) if below_resolution else (1.0, 0)
    corrected = outcome.scale * momentum_correction(k, beta) if outcome.scale > 0 else 0.0
    lowest = PROBE_SHRINK_MIN if outcome.scale > 0 else PROBE_FACTOR_MIN
    factor = min(max(corrected, lowest), PROBE_FACTOR_MAX if warm_up else PROBE_SETTLED_GROWTH)
    verdict = 1 if corrected >= PROBE_FACTOR_MAX else (-1 if corrected <= PROBE_FACTOR_MIN else 0)
    return factor, verdict


def normalised_slope_curvature(
    values: tuple[float, float, float], k: int, beta: float, gamma: float
) -> tuple[float, float]:
    """The parabola's slope and curvature per unit of what they scale with (``docs/adanaged.md`` §3.0):
    ``b / (k gamma)`` (the coherent part of ``D`` grows like ``k gamma``) and ``a / (V(k) gamma^2)`` (its noise part
    has variance ``∝ V(k) gamma^2``, :func:`ema_sum_variance`); then ``-b_n / a_n`` is the constant step that the
    probe recommends, ``lambda* c_k gamma``."""
    f0, fh, f1 = values
    a = 4.0 * (f1 - 2.0 * fh + f0)
    b = f1 - f0 - a / 2.0
    return b / (k * gamma), a / (ema_sum_variance(k, beta) * gamma**2)


def averaged_factor(
    state: dict[str, Any],
    values: tuple[float, float, float],
    k: int,
    beta: float,
    gamma: float,
    single: float,
    previous: int,
) -> float:
    """The factor of an in-band probe from running averages (weight :data:`PROBE_AVERAGE_WEIGHT`) of the normalised
    slope and curvature over consecutive in-band probes: ``clip(-mean(b_n) / mean(a_n) / gamma, 1/4, 4)``. A ratio of
    averages, not an average of ratios: on a minibatch one probe's slope is noisy, and its ratio with the curvature
    is heavy-tailed. The averages restart (and ``single``, the one-probe factor, is used) after a clipped probe,
    since the scale changed, or if they do not describe a descent (``mean(b_n) >= 0`` or ``mean(a_n) <= 0``).
    ``state["avg"]`` holds ``(mean b_n, mean a_n)``."""
    b_n, a_n = normalised_slope_curvature(values, k, beta, gamma)
    avg = state.get("avg")
    if avg is None or previous != 0:
        state["avg"] = (b_n, a_n)
        return single
    w = PROBE_AVERAGE_WEIGHT
    b_bar, a_bar = (1.0 - w) * avg[0] + w * b_n, (1.0 - w) * avg[1] + w * a_n
    state["avg"] = (b_bar, a_bar)
    if not (a_bar > 0 and b_bar < 0):
        return single
    return min(max(-b_bar / a_bar / gamma, PROBE_FACTOR_MIN), PROBE_FACTOR_MAX)


def mean_factor(
    state: dict[str, Any], values: tuple[float, float, float], k: int, beta: float, gamma: float
) -> tuple[float, int]:
    """``(factor, verdict)`` of a settled probe under ``settled="mean"``: the ratio of the running means of the
    normalised slope and curvature (:func:`normalised_slope_curvature`) over *every* settled probe that measured a
    curvature, ``clip(-mean(b_n) / mean(a_n) / gamma, 1/4, 2)``, or ``1/2`` while the means show no descent
    (``mean(b_n) >= 0`` or ``mean(a_n) <= 0``).

    Why (``docs/adanaged.md`` §3.0, "Settled probes on a minibatch"): ``b_n`` and ``a_n`` do not depend on ``gamma``
    in the noise-dominated regime, so probes made at different step sizes estimate the same best constant step, and
    their means converge to it. One probe's slope on a small batch is mostly the batch's noise; clipping each probe
    separately (``settled="clip"``) turns that noise into a downward drift of ``log gamma`` (an ascent costs x1/4,
    a descent earns x2). The weight of a new probe is ``max(1/n, PROBE_MEAN_WEIGHT_MIN)``: the plain mean of the first
    probes, then a memory of about ``1 / PROBE_MEAN_WEIGHT_MIN`` probes. ``state["mean"]`` holds
    ``(n, mean b_n, mean a_n)``."""
    b_n, a_n = normalised_slope_curvature(values, k, beta, gamma)
    n, b_bar, a_bar = state.get("mean") or (0, 0.0, 0.0)
    n += 1
    w = max(1.0 / n, PROBE_MEAN_WEIGHT_MIN)
    b_bar, a_bar = (1.0 - w) * b_bar + w * b_n, (1.0 - w) * a_bar + w * a_n
    state["mean"] = (n, b_bar, a_bar)
    if not (a_bar > 0 and b_bar < 0):
        return 1.0 / PROBE_SETTLED_GROWTH, -1
    factor = min(max(-b_bar / a_bar / gamma, PROBE_FACTOR_MIN), PROBE_SETTLED_GROWTH)
    verdict = 1 if factor >= PROBE_SETTLED_GROWTH else (-1 if factor <= PROBE_FACTOR_MIN else 0)
    return factor, verdict


def probe_memory(
    state: dict[str, Any],
    normalised: tuple[float, float],
    single: int,
    located: bool,
    recover: int,
    outlier: float | None = None,
) -> tuple[float, float, float, float] | None:
    """The running means of the settled probes' normalised slope and curvature ``(b_n, a_n)``
    (:func:`normalised_slope_curvature`) with a weight ``w`` that the probes set; ``(w, mean b_n, mean a_n,
    mean b_n^2)`` after this probe, or ``None`` while ``w = 1`` (the probe answers alone).

    ``w`` halves (down to :data:`PROBE_ADAPTIVE_WEIGHT_MIN`) when the one-probe verdict ``single`` contradicts the
    last non-zero one (grow after shrink or the reverse), and doubles (up to 1) after ``recover`` agreeing ones in
    a row (the same non-zero verdict again). A located overshoot (``located``) restarts the memory at ``w = 1``,
    and so does, with ``outlier`` set, a slope ``b_n`` above the running mean by more than ``outlier`` times the
    spread of the earlier probes' slopes (``sqrt(mean b_n^2 - (mean b_n)^2)``): an ascent that noise of the size
    seen so far does not produce, so the probe answers alone (at ``lambda* = 0``: x1/4 and back to the anchor).
    Where the probes' noise dominates, a non-zero verdict agrees with the last one as often as it contradicts it,
    so with ``recover = 1`` ``log_2 w`` walks without drift and often returns to 1; with ``recover = 2`` a
    contradiction (odds 1/2) halves it and two agreements in a row (odds 1/4) double it, so it stays low.
    ``state["adaptive"]`` holds ``(w, last non-zero verdict, mean b_n, mean a_n, mean b_n^2, agreeing run)``."""
    b_n, a_n = normalised
    memory = state.get("adaptive")
    if memory is not None and outlier is not None and memory[0] < 1.0:
        spread = math.sqrt(max(memory[4] - memory[2] * memory[2], 0.0))
        located = located or b_n > memory[2] + outlier * spread
    if located or memory is None:
        state["adaptive"] = (1.0, single, b_n, a_n, b_n * b_n, 0)
        return None
    w, last, b_bar, a_bar, q_bar, run = memory
    if single != 0 and last != 0:
        if single == last:
            run += 1
            if run >= recover:
                w, run = min(2.0 * w, 1.0), 0
        else:
            w, run = max(w / 2.0, PROBE_ADAPTIVE_WEIGHT_MIN), 0
    last = single or last
    b_bar, a_bar, q_bar = ((1.0 - w) * m + w * v for m, v in ((b_bar, b_n), (a_bar, a_n), (q_bar, b_n * b_n)))
    state["adaptive"] = (w, last, b_bar, a_bar, q_bar, run)
    return None if w >= 1.0 else (w, b_bar, a_bar, q_bar)


def tracking_factor(
    state: dict[str, Any],
    values: tuple[float, float, float],
    k: int,
    beta: float,
    gamma: float,
    single: int,
    located: bool,
    outlier: float | None = None,
) -> tuple[float, int] | None:
    """``(factor, verdict)`` of a settled probe under ``settled="track"`` (``"search-track"``, and
    ``"search-guard"`` with ``outlier = PROBE_OUTLIER_Z``), or ``None`` when the probe's own answer applies
    (:func:`probe_memory` with ``recover = 2``).

    With the means, ``gamma`` tracks the *median* of the best constant step that they estimate,
    ``r = -mean(b_n) / mean(a_n)``: it grows by :data:`PROBE_TRACK_STEP` if ``r > gamma`` (``mean(b_n) <
    -gamma mean(a_n)``) and shrinks by as much otherwise (also when ``mean(a_n) <= 0``). A stochastic approximation
    of a median (Robbins and Monro, Ann. Math. Statist. 22(3), 1951): ``log gamma`` settles where
    ``P(r > gamma) = 1/2``. Since ``b_n`` and ``a_n`` do not depend on ``gamma`` where the probes' noise dominates,
    that is where ``gamma`` equals the median of ``r``, whatever the noise, and equal up and down steps leave no
    drift. The rules that answer the estimated ratio itself (``"search-mean"``, ``"search-adapt"``) answer a
    mean slope that noise made non-negative with a halving, while a negative one can at most double ``gamma``; that
    asymmetry can pull ``log gamma`` down (``docs/adanaged.md`` §3.0, "A memory set by the probes", and §6.7)."""
    memory = probe_memory(state, normalised_slope_curvature(values, k, beta, gamma), single, located, 2, outlier)
    if memory is None:
        return None
    _, b_bar, a_bar, _ = memory
    if a_bar > 0 and b_bar < -gamma * a_bar:
        return PROBE_TRACK_STEP, 0
    return 1.0 / PROBE_TRACK_STEP, 0


def adaptive_factor(
    state: dict[str, Any],
    values: tuple[float, float, float],
    k: int,
    beta: float,
    gamma: float,
    single: int,
    located: bool,
    evidence: float = 0.0,
) -> tuple[float, int] | None:
    """``(factor, verdict)`` of a settled probe under ``settled="adaptive"``, or ``None`` when the probe's own answer
    (``settled="clip"``) applies.

    The running means of :func:`mean_factor` with a weight ``w`` set by the evidence instead of fixed
    (``docs/adanaged.md`` §3.0, "A memory set by the probes"): ``w`` halves (down to
    :data:`PROBE_ADAPTIVE_WEIGHT_MIN`) when the one-probe verdict ``single`` contradicts the last non-zero one (grow
    after shrink or the reverse: the probes' noise dominates their signal), and doubles (up to 1) when it repeats
    it. While ``w = 1`` (exact probes, as on a deterministic problem) the answer is the one-probe answer of
    ``"clip"``, so the rule is the default there. An overshoot the parabola locates (``located``: ``0 < lambda* <
    1/4``, a curvature larger than four times the slope, which batch noise in the slope does not produce) restarts
    the memory and is also answered by the probe alone: it is cut at once.

    Otherwise the mean slope decides where its sign is known to ``evidence`` standard errors: with ``s`` the
    standard error of ``mean(b_n)`` (``s^2 = var(b_n) w / (2 - w)``, the variance of an exponential mean of
    independent values, with ``var(b_n)`` from a running mean of ``b_n^2``), a descent ``mean(b_n) < -evidence s``
    gives ``clip(-mean(b_n) / mean(a_n) / gamma, 1/4, 2)``, an ascent ``mean(b_n) >= evidence s`` (or no upward
    mean curvature) gives ``1/2``, and a slope whose sign is unknown keeps ``gamma``. With ``evidence = 0``
    (``"search-adapt"``) the mean's sign always decides; with ``evidence = PROBE_EVIDENCE_Z``
    (``"search-evidence"``) noise alone leaves ``log gamma`` where it is instead of halving it on every probe
    while the means happen to show no descent.
    The memory is :func:`probe_memory`'s (``recover = 1``)."""
    memory = probe_memory(state, normalised_slope_curvature(values, k, beta, gamma), single, located, 1)
    if memory is None:
        return None
    w, b_bar, a_bar, q_bar = memory
    s = math.sqrt(max(q_bar - b_bar * b_bar, 0.0) * w / (2.0 - w))
    if b_bar >= evidence * s or a_bar <= 0:
        return 1.0 / PROBE_SETTLED_GROWTH, 0
    if b_bar >= -evidence * s:
        return 1.0, 0
    factor = min(max(-b_bar / a_bar / gamma, PROBE_FACTOR_MIN), PROBE_SETTLED_GROWTH)
    return factor, (-1 if factor <= PROBE_FACTOR_MIN else 0)


def next_probe_interval(k: int, verdict: int, previous: int) -> int:
    """The next probe interval: doubled (up to :data:`PROBE_INTERVAL_MAX`) after a probe inside the band, or after a
    clipped probe that contradicts the previous clipped one (grow after shrink or the reverse: noise, which a longer
    displacement averages, since its coherent part grows like ``k`` and its noise like ``sqrt(k)``); halved (down
    to 1) after a clipped probe that repeats the previous verdict or follows one inside the band (a real
    search: the warm-up, or the retreat after a step far too long)."""
    if verdict == 0 or (previous != 0 and previous != verdict):
        return min(2 * k, PROBE_INTERVAL_MAX)
    return max(1, k // 2)


class ParabolicSearchRule:
    """Function-value step search (the default rules of :class:`AdaNAGED`, :data:`DEFAULT_STEP_RULE`; module
    docstring, ``docs/adanaged.md`` §3.0).

    ``gamma_0 = r_eps``; the step size changes only at probes, by :func:`probe_factor`. ``needs = {"probe"}``
    makes the optimizer run the probes (3 extra closure calls every ``K`` steps) and keep the anchor. Invariant to
    ``f -> c f + b`` (``c > 0``): the parabola's optimum and the tie test (relative) do not change.
    """

    needs = frozenset({"probe"})

    def __init__(
        self,
        unresolved: str = "sign",
        settled: str = "clip",
        stay: bool = True,
        evidence: float = 0.0,
        outlier: float | None = None,
    ) -> None:
        """``unresolved``: the settled answer to a probe whose curvature is below the loss's resolution
        (:func:`probe_factor`); ``settled``: the answer to a settled probe that measured one (``"clip"``: each
        probe on its own, :func:`probe_factor` and :func:`averaged_factor`; ``"mean"``: :func:`mean_factor`).
        The defaults are the rule ``"search"``; ``("grow", "clip")`` is ``"search-grow"``, ``("grow", "mean")``
        is ``"search-mean"``, ``("grow", "adaptive")`` is ``"search-adapt"`` and ``("grow", "track")`` is
        ``"search-track"`` (:func:`tracking_factor`). ``stay`` (``"adaptive"`` and ``"track"``): while the means
        answer, the iterate stays at ``x_t`` unless they say "shrink 4x"; with ``stay=False``
        (``"search-adapt-move"``, ``"search-track-move"``) it moves where the probe's own parabola says, as under
        ``"clip"``. ``evidence``
        (``"adaptive"`` only): the standard errors by which the mean slope must differ from 0 before its sign
        decides (:func:`adaptive_factor`; ``PROBE_EVIDENCE_Z`` is ``"search-evidence"``). ``outlier``
        (``"track"`` only): answer alone a probe whose slope is an outlier of the memory (:func:`probe_memory`;
        ``PROBE_OUTLIER_Z`` is ``"search-guard"``)."""
        if unresolved not in UNRESOLVED_ANSWERS:
            raise ValueError(f"unresolved must be one of {list(UNRESOLVED_ANSWERS)}, got {unresolved!r}")
        if settled not in SETTLED_ANSWERS:
            raise ValueError(f"settled must be one of {list(SETTLED_ANSWERS)}, got {settled!r}")
        self.unresolved = unresolved
        self.settled = settled
        self.stay = stay
        validate_nonnegative("evidence", evidence)
        if outlier is not None:
            validate_nonnegative("outlier", outlier)
        self.evidence = float(evidence)
        self.outlier = None if outlier is None else float(outlier)
        names = {
            ("sign", "clip", True, 0.0, None): "search",
            ("grow", "clip", True, 0.0, None): "search-grow",
            ("grow", "mean", True, 0.0, None): "search-mean",
            ("grow", "adaptive", True, 0.0, None): "search-adapt",
            ("grow", "adaptive", False, 0.0, None): "search-adapt-move",
            ("grow", "adaptive", True, PROBE_EVIDENCE_Z, None): "search-evidence",
            ("grow", "track", True, 0.0, None): "search-track",
            ("grow", "track", True, 0.0, PROBE_OUTLIER_Z): "search-guard",
            ("grow", "track", False, 0.0, None): "search-track-move",
        }
        key = (unresolved, settled, stay, self.evidence, self.outlier)
        self.name = names.get(
            key, f"search({unresolved}, {settled}, stay={stay}, evidence={self.evidence:g}, outlier={self.outlier})"
        )

    def init(self, state: dict[str, Any], r_eps: Tensor) -> None:
        state["gamma"] = r_eps.clone()

    def update(self, state: dict[str, Any], stats: StepStats) -> Tensor:
        return state["gamma"].clone()

    def scale(self, state: dict[str, Any], factor: float, cap: Tensor) -> None:
        """``gamma <- min(factor * gamma, cap)`` after a probe; ``cap = 1 + ||x_0||`` (``r_eps`` of ``reps_rel = 1``):
        no single step may be longer than the initial point's own scale."""
        state["gamma"] = torch.minimum(state["gamma"] * factor, cap)


STEP_RULES: dict[str, Callable[[], StepSizeRule]] = {
    "search": ParabolicSearchRule,
    "search-grow": partial(ParabolicSearchRule, unresolved="grow"),
    "search-mean": partial(ParabolicSearchRule, unresolved="grow", settled="mean"),
    "search-adapt": partial(ParabolicSearchRule, unresolved="grow", settled="adaptive"),
    "search-adapt-move": partial(ParabolicSearchRule, unresolved="grow", settled="adaptive", stay=False),
    "search-evidence": partial(ParabolicSearchRule, unresolved="grow", settled="adaptive", evidence=PROBE_EVIDENCE_Z),
    "search-track": partial(ParabolicSearchRule, unresolved="grow", settled="track"),
    "search-guard": partial(ParabolicSearchRule, unresolved="grow", settled="track", outlier=PROBE_OUTLIER_Z),
    "search-track-move": partial(ParabolicSearchRule, unresolved="grow", settled="track", stay=False),
    "dog": DoGRule,
    "alias": ALIASRule,
}


#: AdaNAGED's default step-size rule (``docs/adanaged.md`` §6.7: every synthetic claim passes with it, and on real
#: weights, MiniLM LoRA, it closes most of the gap that ``"search"``, the default before it, left to a tuned step).
DEFAULT_STEP_RULE = "search-adapt-move"


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
    if isinstance(unscaled(norm)[0], (Spectral, Nuclear, NewtonSchulzSpectral)) and p.dim() < 2:
        raise ValueError(f"norm {norm.name!r} needs a matrix, but {name} has shape {tuple(p.shape)}")
    return norm


MOMENTA: tuple[str, ...] = ("ema", "jaguar")
#: Block radii of the product norm: ``"unit"`` (every block's ball has radius 1) or ``"rms"`` (radius
#: :func:`zotheory.lmo.rms_radius`: a unit step moves every block's entries by about 1 in RMS).
RADII: tuple[str, ...] = ("unit", "rms")


def block_norms(norms: list[Norm], params: list[Tensor], radii: str) -> list[Norm]:
    """The block norms with their radii (``docs/adanaged.md`` §3.1): unchanged for ``"unit"``; for ``"rms"``
    :class:`~zotheory.lmo.Scaled` by :func:`~zotheory.lmo.rms_radius` of the block's shape."""
    if radii not in RADII:
        raise ValueError(f"radii must be one of {list(RADII)}, got {radii!r}")
    if radii == "unit":
        return norms
    return [Scaled(n, rms_radius(n, tuple(p.shape))) for n, p in zip(norms, params, strict=True)]


class AdaNAGED(ZOOptimizer):
    r"""AdaNAGED (our reconstruction; module docstring and ``docs/adanaged.md``).

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter groups; a group may set ``"norm"`` (a name
            of :data:`zotheory.lmo.NORMS` or a :class:`~zotheory.lmo.Norm`), ``"beta"`` and ``"lr"``.
        norm: default norm of groups without one; ``None`` routes by shape (:func:`default_norm_name`:
            Newton–Schulz spectral for matrices, sign/l-inf otherwise).
        step_rule: a name of :data:`STEP_RULES` (default :data:`DEFAULT_STEP_RULE`, ``"search-adapt-move"``, a
            :class:`ParabolicSearchRule`; ``"search"``, the previous default, ``"dog"``, ``"alias"``, ...) or any
            :class:`StepSizeRule`.
        momentum: ``"ema"`` (Gaussian two-point estimates and an EMA) or ``"jaguar"`` (one coordinate per
            step and the JAGUAR memory of :mod:`zotheory.optim.jaguar`).
        beta: momentum constant in ``[0, 1)``; default 0.9 (EMA) / 0.0 (JAGUAR replacement memory).
        layerwise: one step-size unit per parameter tensor, or (default) one for the product norm.
        radii: the blocks' radii in the product norm (:data:`RADII`): ``"unit"`` (default) or ``"rms"``, which
            makes a step move every block's entries alike (:func:`block_norms`, ``docs/adanaged.md`` §3.1).
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

    fixed_options = frozenset({"scheme"})

    def __init__(
        self,
        params: Iterable[Any],
        *,
        norm: str | Norm | None = None,
        step_rule: str | StepSizeRule = DEFAULT_STEP_RULE,
        momentum: str = "ema",
        beta: float | None = None,
        layerwise: bool = False,
        radii: str = "unit",
        reps_rel: float = 1e-6,
        tau0_rel: float = 1e-3,
        eps: float | None = None,
        radius_rule: str | RadiusRule = "step",
        lr: float = 1.0,
        x0_dtype: torch.dtype | None = None,
        **options: Unpack[RadiusFreeOptions],
    ) -> None:
        if momentum not in MOMENTA:
            raise ValueError(f"momentum must be one of {list(MOMENTA)}, got {momentum!r}")
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
        fixed: dict[str, Any] = {"eps": 1.0 if eps is None else eps, "scheme": "central"}  # eps: replaced by tau_0
        if momentum == "jaguar":
            fixed["directions"] = Coordinate()
        config = self.estimator_config(options, **fixed)
        if config.policy is not None and momentum != "ema":
            raise ValueError(
                f"a direction policy needs momentum='ema' (JAGUAR memory draws coordinates), got {momentum!r}"
            )
        if momentum == "jaguar" and config.q != 1:
            raise ValueError(f"momentum='jaguar' samples one coordinate per step (q=1), got q={config.q!r}")
        self.rule = get_step_rule(step_rule)
        if x0_dtype is not None and "dist" not in self.rule.needs:
            raise ValueError(f"x0_dtype={x0_dtype} applies to rules that keep x_0 (dog), not to {self.rule.name!r}")
        self.radius_rule = _get_radius_rule(radius_rule)
        super().__init__(params, dict(lr=lr, norm=norm, beta=beta), config=config)
        self.momentum = momentum
        self.layerwise = layerwise
        self.x0_dtype = x0_dtype
        params_ = self.zo_params()
        names = self.zo_param_names()
        self.radii = radii
        self.norms: list[Norm] = block_norms(
            [_resolve_norm(g["norm"], p, n) for p, g, n in zip(params_, self.zo_param_groups(), names, strict=False)],
            params_,
            radii,
        )
        dim = sum(p.numel() for p in params_)
        self._typ = self.directions.typical_entry(dim)
        if eps is None:
            rms0 = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params_) / max(dim, 1))
            self.tau0 = self.tau0_rel * (1.0 + rms0) / self._typ
        else:
            self.tau0 = float(eps)
        self.eps = self.tau0
        self.config = replace(self.config, eps=self.tau0)
        self.state["adanaged"] = {
            "tau": self.tau0,
            "units": None,
            "since": 0,
            "interval": 1,
            "probe_evals": 0,
            "last_probe": None,
            "last_verdict": 0,
            "avg": None,
            "settled": False,
            "tally": _empty_tally(),
        }

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

    @property
    def probes(self) -> bool:
        """Whether the rule runs function-value probes (then an anchor copy is kept)."""
        return "probe" in self.rule.needs

    def probe_evaluations(self) -> int:
        """Closure calls spent on probes so far (beyond :attr:`evals_per_step` per step)."""
        return int(self.state["adanaged"]["probe_evals"])

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
            if self.probes:
                state["gamma_max"] = reps_initial_distance(1.0, x0_norm).to(r_eps.device)
            units.append(state)
        return units

    def _dual(self, i: int, g: Tensor) -> Tensor:
        """``||g||_*`` of block ``i``: exact, except for Newton–Schulz blocks, where the realised value
        ``<g, -NS(g)>`` is used (no SVD; within the quintic's band ``[0.68, 1.13]`` of the nuclear norm)."""
        norm = self.norms[i]
        if isinstance(unscaled(norm)[0], NewtonSchulzSpectral):
            return realised_dual(g, norm.lmo(g, 1.0))
        return norm.dual_norm(g).double()

    def _distance(self, i: int, p: Tensor) -> Tensor:
        """``||x_t - x_0||`` in block ``i``'s norm: exact, except for Newton–Schulz blocks, whose spectral norm
        comes from :data:`~zotheory.optim.measures.POWER_STEPS` power iterations started at the all-ones vector
        (no SVD, no state; a lower estimate of ``sigma_1``, so ``rbar`` errs on the small, safe side)."""
        sd = _state_dtype(p)
        diff = p.detach().to(sd) - self.state[p]["x0"].to(sd)
        base, rho = unscaled(self.norms[i])
        if not isinstance(base, NewtonSchulzSpectral):
            return self.norms[i].norm(diff).double()
        return power_spectral_norm(diff) / rho

    # ------------------------------------------------------------------ the step
    @property
    def _probe_due(self) -> bool:
        ad = self.state["adanaged"]
        return self.probes and ad["units"] is not None and ad["since"] >= ad["interval"]

    @property
    def folds_restore(self) -> bool:
        """The first step (``x_0`` measured), a probe (it needs ``x_t``) and the JAGUAR memory (one entry) want the
        parameters restored before the update; the EMA's dense estimates fold the restore in otherwise."""
        return self.momentum == "ema" and self.state["adanaged"]["units"] is not None and not self._probe_due

    def _before_update(self, closure: Any) -> int:
        """A due probe runs on the batch of this step's estimate (which chose none of the probed steps), before
        the update: a non-finite estimate therefore changes nothing, probe included."""
        return self._probe(closure) if self._probe_due else 0

    def _zo_step(self, closure: Any) -> tuple[Tensor, int]:
        loss, n_evals = super()._zo_step(closure)
        if self.probes:
            self.state["adanaged"]["since"] += 1
        return loss, n_evals

    def _probe(self, closure: Any) -> int:
        """Evaluate ``f`` at ``x_t``, at the anchor ``x_a`` and at the midpoint; move, rescale ``gamma``, re-anchor.

        The anchor buffer and the parameters are swapped bit-exactly, so at every moment ``x_t`` is held by one of
        them: an exception from the closure puts ``x_t`` back before it propagates (during the midpoint's
        evaluation ``x_a`` is gone, and the anchor becomes ``x_t``). A non-finite value counts as ``+inf``; only if
        all three are non-finite is :class:`NonFiniteLossError` raised (parameters at ``x_t``, anchor ``x_t``).
        """
        ad = self.state["adanaged"]
        params = self.zo_params()
        anchors = [self.state[p]["anchor"] for p in params]
        dtypes: list[torch.dtype] = []

        def value() -> float:
            raw = closure()
            dtypes.append(raw.dtype if isinstance(raw, Tensor) and raw.is_floating_point() else torch.float64)
            return float(as_loss(raw))

        swapped = False
        try:
            f1 = value()
            for p, a in zip(
                params, anchors, strict=False
            ):  # exact both ways: the anchor only ever holds values of p's dtype
                tmp = p.detach().clone()
                p.copy_(a)
                a.copy_(tmp)
            swapped = True  # params = x_a, anchors = x_t
            f0 = value()
            for p, a in zip(params, anchors, strict=False):
                p.add_(a.to(p.dtype)).mul_(0.5)  # params = (x_a + x_t) / 2
            fh = value()
        except BaseException:
            if swapped:
                for p, a in zip(params, anchors, strict=False):
                    p.copy_(a)
            raise
        ad["probe_evals"] += PROBE_EVALS
        if not any(math.isfinite(v) for v in (f0, fh, f1)):
            for p, a in zip(params, anchors, strict=False):
                p.copy_(a)
            raise NonFiniteLossError(
                f"AdaNAGED probe: the loss is non-finite at x_t, x_a and their midpoint ({f1}, {f0}, {fh})"
            )
        res = max(dtype_resolution(dt) for dt in dtypes)
        tol = 4.0 * res * max(abs(v) for v in (f0, fh, f1))
        outcome = parabolic_probe(f0, fh, f1, tol)
        below = False
        res_p = max(dtype_resolution(p.dtype) for p in params)
        if outcome.tie:  # is the displacement D = 2 (x_t - mid) below the parameters' resolution?
            sq_d = sum(
                float((a.double() - p.double()).pow(2).sum()) * 4.0 for p, a in zip(params, anchors, strict=False)
            )
            sq_x = sum(float(a.double().pow(2).sum()) for a in anchors)
            # D = 0 (lr = 0): nothing to learn; and ties never grow gamma past sqrt(eps) of the initial scale, since
            # a displacement below resolution can also be the rounding of the restores (e.g. m = 0 on a flat loss)
            unit0 = ad["units"][0]
            below = 0.0 < sq_d <= res_p * max(sq_x, 1e-300) and float(unit0["gamma"]) < math.sqrt(res_p) * float(
                unit0["gamma_max"]
            )
        beta = 0.0 if self.momentum == "jaguar" else max(float(g["beta"]) for g in self.param_groups)
        answer = getattr(self.rule, "unresolved", "sign")
        was_settled = ad["settled"]
        factor, verdict = probe_factor(outcome, ad["since"], beta, below, warm_up=not was_settled, unresolved=answer)
        ad["settled"] = was_settled or verdict == 0 or (verdict == -1 and ad["last_verdict"] == 1)  # in band, or passed
        measured = not (outcome.tie or outcome.unresolved) and all(math.isfinite(v) for v in (f0, fh, f1))
        settled = getattr(self.rule, "settled", "clip")
        values, gamma0 = (f0, fh, f1), float(ad["units"][0]["gamma"])
        averaged = None
        located = 0.0 < outcome.scale < PROBE_FACTOR_MIN
        if was_settled and measured and settled == "adaptive":
            evidence = getattr(self.rule, "evidence", 0.0)
            averaged = adaptive_factor(ad, values, ad["since"], beta, gamma0, verdict, located, evidence)
        elif was_settled and measured and settled == "track":
            outlier = getattr(self.rule, "outlier", None)
            averaged = tracking_factor(ad, values, ad["since"], beta, gamma0, verdict, located, outlier)
        lam = 0.0 if verdict == -1 else outcome.move  # a step judged far too long: back to the anchor
        if averaged is not None:  # noisy probes: the means answer; the iterate stays unless they say overshoot
            factor, verdict = averaged
            lam = 0.0 if verdict == -1 else (1.0 if getattr(self.rule, "stay", True) else outcome.move)
        elif was_settled and measured and settled == "mean":
            factor, verdict = mean_factor(ad, values, ad["since"], beta, gamma0)
            lam = 0.0 if verdict == -1 else outcome.move
        elif verdict == 0 and not outcome.tie:
            factor = averaged_factor(
                ad, (f0, fh, f1), ad["since"], beta, float(ad["units"][0]["gamma"]), factor, ad["last_verdict"]
            )
        else:
            ad["avg"] = None
        for p, a in zip(params, anchors, strict=False):
            # x_new = x_a + lam D = (2 lam - 1) x_t + (2 - 2 lam) mid; params hold mid, anchors hold x_t
            if lam == 1.0:
                p.copy_(a)
            elif lam != 0.5:
                p.mul_(2.0 - 2.0 * lam).add_(a.to(p.dtype), alpha=2.0 * lam - 1.0)
            a.copy_(p)
        for unit in ad["units"]:
            cap = unit["gamma_max"] * (math.sqrt(res_p) if below else 1.0)  # tie growth stops at sqrt(eps) of the scale
            self.rule.scale(unit, factor, cap)  # type: ignore[attr-defined]
        tally = ad["tally"]
        tally["probes"] += 1
        tally["unresolved"] += int(outcome.unresolved)
        tally["tie"] += int(outcome.tie)
        tally["in_band"] += int(verdict == 0)
        ad["last_probe"] = {
            "f_anchor": f0,
            "f_mid": fh,
            "f_current": f1,
            "scale": outcome.scale,
            "move": lam,
            "factor": factor,
            "steps": ad["since"],
            "tie": outcome.tie,
            "gamma": gamma0,
            "verdict": verdict,
            "memory": (ad.get("adaptive") or (1.0,))[0],
        }
        ad["interval"] = next_probe_interval(ad["interval"], verdict, ad["last_verdict"])
        ad["last_verdict"] = verdict
        ad["since"] = 0
        return PROBE_EVALS

    def _update(self, est: ZOEstimate) -> None:
        ad = self.state["adanaged"]
        params = self.zo_params()
        groups = self.zo_param_groups()
        first = ad["units"] is None
        if first:  # r_eps and the x_0 copy from x_0 itself (restored by the base class: folds_restore)
            ad["units"] = self._init_units()
            if self.probes:
                for p in params:
                    self.state[p]["anchor"] = p.detach().to(_state_dtype(p)).clone()
            if self.needs_x0:
                for p in params:
                    self.state[p]["x0"] = p.detach().to(self.x0_dtype or _state_dtype(p)).clone()
        needs = self.rule.needs
        want_diff = "diff" in needs and not first
        want_dec = "decrease" in needs and not first
        n = len(params)
        zero = torch.zeros((), dtype=torch.float64, device=params[0].device)
        est_dual: list[Tensor] = [zero] * n
        diff_dual: list[Tensor] = [zero] * n
        decrease: list[Tensor] = [zero] * n

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
        else:
            self._jaguar_memory(est, params, groups, needs, want_diff, want_dec, est_dual, diff_dual, decrease)
        # lmo(m) of every block, the Newton-Schulz ones of equal shape stacked into one batched chain
        moms = [self.state[p]["m"] for p in params]
        lmos = block_lmos(self.norms, moms, 1.0, budget=NS_BATCH_BUDGET)
        mom_dual = [realised_dual(m, s) for m, s in zip(moms, lmos, strict=False)]
        directions: list[Tensor | None] = list(lmos)
        del lmos, moms

        sq_step = 0.0
        for unit, members in zip(ad["units"], self.units(), strict=False):
            # the unit's product norm: primal = max over its blocks, dual = sum (docs/theory.md §5.30)
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
        self.state["adanaged"].setdefault("tally", _empty_tally())  # checkpoints written before the tally existed

    def probe_record(self) -> dict[str, float] | None:
        """The probe of the last step as plain numbers (for logging), or ``None`` if that step ran none: its three
        losses, the parabola's ``lambda*`` (``scale``), the ``move`` along ``D``, the ``factor`` applied to the
        ``gamma`` it found, its ``verdict``, the ``steps`` it spanned and the weight of the running means
        (``memory``; 1 for rules without them)."""
        ad = self.state["adanaged"]
        probe = ad["last_probe"]
        if probe is None or ad["since"] != 1:  # a probe resets the count, and the step that ran it adds 1
            return None
        return {k: float(v) for k, v in probe.items()}

    def step_sizes(self) -> list[float]:
        """The last ``gamma_t`` of every unit (for logging); empty before the first step."""
        units = self.state["adanaged"]["units"]
        return [] if units is None else [float(u["last_gamma"]) for u in units if "last_gamma" in u]


def _empty_tally() -> dict[str, int]:
    """Probe counts: all, with the curvature below the loss's resolution, ties, and verdicts inside the band."""
    return {"probes": 0, "unresolved": 0, "tie": 0, "in_band": 0}


def step_size_summary(optimizer_state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The step-size state that an :class:`AdaNAGED` ``state_dict()`` (a run's resume checkpoint, say) holds.

    As plain numbers:

    - ``gamma``: the last ``gamma_t`` of each unit; ``gamma_cap``: its cap ``1 + ||x_0||`` (search rule only);
    - ``probe_interval`` and ``probe_evals`` (closure calls spent on probes);
    - ``last_probe``: its loss at the anchor, the midpoint and the current point, the factor it applied to
      ``gamma`` and the steps it spanned (``None`` before the first probe, or for rules without probes);
    - ``probe_tally``: how many probes ran, how many had a curvature below the loss's resolution, how many were
      ties, and how many landed inside the band (``None`` for states saved before the tally existed).

    ``None`` for another optimizer's state, or before the first step."""
    ad = optimizer_state.get("state", {}).get("adanaged")
    if not isinstance(ad, Mapping) or ad.get("units") is None:
        return None
    probe = ad.get("last_probe")
    last = None
    if probe is not None:
        last = {k: float(probe[k]) for k in ("f_anchor", "f_mid", "f_current", "factor")}
        last["steps"] = int(probe["steps"])
    return {
        "gamma": [float(u["last_gamma"]) for u in ad["units"] if "last_gamma" in u],
        "gamma_cap": [float(u["gamma_max"]) for u in ad["units"] if "gamma_max" in u],
        "probe_interval": int(ad["interval"]),
        "probe_evals": int(ad["probe_evals"]),
        "last_probe": last,
        "probe_tally": None if ad.get("tally") is None else {k: int(v) for k, v in ad["tally"].items()},
    }
