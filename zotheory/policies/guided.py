"""Prior-informed perturbations: guiding vector (MeZO-GV), greedy best-of-M, carried best.

Jin, Cen & Tan, "Prior-Informed Zeroth-Order Optimization with Adaptive Direction
Alignment" (arXiv 2601.04710; v2 "Steering the Noise", methods MeZO-GV and MeZO-Greedy),
``docs/theory.md`` §2. Every policy here first evaluates candidate directions
``z_1 .. z_M ~ N(0, I)`` one-sidedly, ``F_i = f(x + r z_i)``, then returns the central
two-point estimate along a direction ``v`` built from them,

    g_hat = (f(x + r v) - f(x - r v)) / (2 r) * v

(no rescaling of ``v``: the estimator of the paper and of the public code).

* :class:`GuidedVectorPolicy` (``M``, ``alpha``): ``v = mean(top) - mean(bottom)`` with the
  ``floor(alpha M)`` lowest-loss candidates on top (MeZO-GV, ``docs/theory.md`` §2.1);
  ``M + 2`` evaluations.
* :class:`GreedyPolicy` (``M``): ``v = z_{i*}``, ``i* = argmin_i F_i`` (MeZO-Greedy); ``M + 2``.
* :class:`CarriedBestPolicy`: the variant the public code runs (``trainer.py``,
  ``docs/theory.md`` §2.2): one new candidate plus the previous step's best seed,
  re-evaluated at the current ``x`` (two fresh seeds at the first step); ``v = z_best -
  z_worst``; the best seed is carried to the next step. 4 evaluations every step.

Linear-regime facts (``docs/theory.md`` §2.4, §5.19-5.21): with ``M = 2`` fresh i.i.d.
candidates neither GV nor greedy changes the law of ``cos^2(v, g)`` (``E cos^2 = 1/d``);
the alignment gain ``G = E[a^2] / c`` grows with ``M`` (``zotheory.theory.guided_vector_alignment_gain``,
``greedy_alignment_gain``); for linear ``f`` and ``M = 2``, ``<g, v> <= 0`` always (§5.21).

This module also holds the pieces shared with :mod:`zotheory.policies.ldsd`:
:class:`PinnedCombinations` (a family whose directions are fixed linear combinations of
seeded base directions, so that a chosen or combined direction is regenerated, never
stored) and :func:`evaluate_candidates` (one-sided candidate losses through
:func:`zotheory.estimators.estimate_gradient`, which owns the perturb/restore, the
non-finite guard and the exception-safe restore).

Closure contract: all candidate evaluations and the two-point difference of one step
call the same closure, which must evaluate the same minibatch with the same randomness
(``zotheory.optim.base``). Parameters are restored after every candidate; a NaN/inf
loss or an exception restores them before it propagates (bit-exactly with
``exact_restore``), and leaves the policy's state unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from zotheory.directions import DirectionFamily, get_directions
from zotheory.estimators import Scheme, ZOEstimate, estimate_gradient, evaluations_needed
from zotheory.policies.base import DirectionPolicy

NORMALIZATIONS: tuple[str, ...] = ("none", "unit_variance")

Term = tuple[int, int, float]  # (seed, direction index j, weight) of a base direction


# ---------------------------------------------------------------------------------- shared pieces
def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Combinations of half-precision directions are accumulated in fp32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class PinnedCombinations(DirectionFamily):
    """Directions pinned to seeds: ``v_j = sum_t w_t * base(seed_t, j_t)`` for ``terms[j]``.

    A policy builds one such family per step to describe the direction it chose (a single
    term of weight 1) or combined (the guiding vector), so the optimizer regenerates it
    from a handful of integers and floats exactly like a fresh direction. The seeds are part
    of the family; the ``step_seed`` argument of :meth:`tensor_direction` must equal the
    ``step_seed`` the family was built for (checked: a mismatch means the estimate is used
    with the wrong record). ``scale`` is the base family's.

    Cost: regenerating ``v_j`` draws ``len(terms[j])`` base directions per tensor.
    """

    name = "pinned"

    def __init__(self, base: DirectionFamily, terms: Sequence[Sequence[Term]], step_seed: int) -> None:
        if len(terms) == 0 or any(len(t) == 0 for t in terms):
            raise ValueError(f"every pinned direction needs at least one term, got {terms!r}")
        self.base = base
        self.terms: tuple[tuple[Term, ...], ...] = tuple(
            tuple((int(s), int(j), float(w)) for s, j, w in t) for t in terms
        )
        self.step_seed = int(step_seed)

    def scale(self, dim: int) -> float:
        return self.base.scale(dim)

    def typical_entry(self, dim: int) -> float:
        norm = max(math.sqrt(sum(w * w for _, _, w in t)) for t in self.terms)
        return self.base.typical_entry(dim) * norm

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        if int(step_seed) != self.step_seed:
            raise ValueError(
                f"pinned directions were built for step seed {self.step_seed}, asked for step seed {step_seed}"
            )
        if not 0 <= j < len(self.terms):
            raise ValueError(f"direction index {j} outside the {len(self.terms)} pinned direction(s)")
        terms = self.terms[j]
        if len(terms) == 1 and terms[0][2] == 1.0:
            s, jj, _ = terms[0]
            return self.base.tensor_direction(shapes, index, s, jj, dtype, device)
        work = _work_dtype(dtype)
        acc: torch.Tensor | None = None
        for s, jj, w in terms:
            z = self.base.tensor_direction(shapes, index, s, jj, work, device)
            acc = z.mul_(w) if acc is None else acc.add_(z, alpha=w)
        assert acc is not None
        return acc.to(dtype)

    def __repr__(self) -> str:
        return f"PinnedCombinations(base={self.base!r}, terms={self.terms!r})"


def evaluate_candidates(
    params: Sequence[torch.Tensor],
    closure: Callable[[], Any],
    family: DirectionFamily,
    *,
    step_seed: int,
    n: int,
    radius: float,
    exact_restore: bool,
) -> torch.Tensor:
    """One-sided candidate losses ``F_j = f(x + r z_j)``, ``j < n``, as a ``(n,)`` float64 tensor.

    Runs :func:`~zotheory.estimators.estimate_gradient` with the ``one_point`` scheme, so the
    parameters are restored after each candidate and on NaN/inf or an exception (then it
    raises :class:`~zotheory.estimators.NonFiniteLossError` or re-raises) exactly as for a
    plain estimate; with ``exact_restore`` the parameters are also put back bit-exactly after
    the last candidate (from the estimator's copy). ``n`` closure calls.
    """
    est = estimate_gradient(
        params,
        closure,
        family,
        step_seed=step_seed,
        q=n,
        radius=radius,
        scheme="one_point",
        exact_restore=exact_restore,
    )
    if est.backup is not None:
        # the one-point pass restores arithmetically (x + r z - r z); with exact_restore the
        # copy makes the candidates leave x bit-identical
        with torch.no_grad():
            for p, b in zip(params, est.backup, strict=False):
                p.copy_(b)
    return est.losses


def estimate_along(
    params: Sequence[torch.Tensor],
    closure: Callable[[], Any],
    family: PinnedCombinations,
    candidate_losses: torch.Tensor,
    *,
    step_seed: int,
    radius: float,
    scheme: Scheme,
    leave_pending: bool,
    exact_restore: bool,
) -> ZOEstimate:
    """The finite-difference estimate along the pinned direction, with the candidates counted.

    ``losses`` of the returned record lists the candidate losses first, then the
    evaluations of the estimate; ``n_evals`` counts both; ``loss`` is the estimate's own
    (the mean of ``f(x + r v)`` and ``f(x - r v)`` for central differences).
    """
    est = estimate_gradient(
        params,
        closure,
        family,
        step_seed=step_seed,
        q=1,
        radius=radius,
        scheme=scheme,
        leave_pending=leave_pending,
        exact_restore=exact_restore,
    )
    losses = torch.cat([candidate_losses.to(est.losses.device), est.losses])
    return replace(est, losses=losses, n_evals=int(candidate_losses.numel()) + est.n_evals)


def require_single_direction(q: int, policy: str) -> None:
    """Policies return one chosen direction per step: the optimizer's ``q`` must be 1."""
    if q != 1:
        raise ValueError(f"{policy} chooses one direction per step; set the optimizer's q=1 (got q={q!r})")


def check_int_at_least(name: str, value: object, minimum: int) -> int:
    """``value`` if it is an int ``>= minimum`` (not a bool), else a ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def _check_normalize(normalize: str) -> str:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got normalize={normalize!r}")
    return normalize


def guided_weights(order: Sequence[int], top: int, normalize: str) -> list[float]:
    """Weights ``w_j`` of ``v = sum_j w_j z_j`` for the guiding vector (``docs/theory.md`` §2.1).

    ``order`` lists candidate indices from lowest to highest loss; the first ``top`` get
    ``+1/top``, the others ``-1/(M - top)``: ``v = mean(top) - mean(bottom)``.

    ``normalize="none"``: exactly that (the paper's formula and the public code: for
    ``M = 2`` it is ``z_best - z_worst``, ``E||v||^2 = 2d`` exactly, effective radius
    ``sqrt(2) r``, §5.20). ``"unit_variance"``: all weights divided by
    ``sqrt(c)``, ``c = 1/top + 1/(M - top) = sum_j w_j^2``, so that every coordinate of ``v``
    orthogonal to the gradient has unit variance, as for one ``N(0, I)`` direction
    (``||v||^2 = d`` exactly in law for ``M = 2``; ``E||v||^2 = d - 1 + G`` in the linear
    model of 2.4 for general ``M``, with ``G`` the alignment gain).
    """
    M = len(order)
    weights = [0.0] * M
    for rank, j in enumerate(order):
        weights[j] = 1.0 / top if rank < top else -1.0 / (M - top)
    if normalize == "unit_variance":
        s = 1.0 / math.sqrt(1.0 / top + 1.0 / (M - top))
        weights = [w * s for w in weights]
    return weights


def _ascending(losses: torch.Tensor) -> list[int]:
    """Candidate indices by increasing loss; ties keep the lower index first (stable)."""
    return [int(i) for i in torch.sort(losses.detach().cpu(), stable=True).indices]


class _CandidatePolicy(DirectionPolicy):
    """Shared plumbing of the fresh-candidate policies (GV and greedy)."""

    def __init__(self, M: int, directions: str | DirectionFamily) -> None:
        self.M = check_int_at_least("M", M, 2)
        self.base = get_directions(directions)
        self.last: dict[str, Any] = {}

    def evals_per_step(self, scheme: Scheme, q: int) -> int:
        require_single_direction(q, type(self).__name__)
        return self.M + evaluations_needed(scheme, 1)

    def _weights(self, order: list[int]) -> list[float]:
        raise NotImplementedError

    def estimate(
        self,
        params: Sequence[torch.Tensor],
        closure: Callable[[], Any],
        *,
        step_seed: int,
        radius: float,
        scheme: Scheme,
        q: int,
        leave_pending: bool,
        exact_restore: bool,
    ) -> ZOEstimate:
        require_single_direction(q, type(self).__name__)
        losses = evaluate_candidates(
            params, closure, self.base, step_seed=step_seed, n=self.M, radius=radius, exact_restore=exact_restore
        )
        order = _ascending(losses)
        weights = self._weights(order)
        terms = [[(step_seed, j, w) for j, w in enumerate(weights) if w != 0.0]]
        family = PinnedCombinations(self.base, terms, step_seed)
        est = estimate_along(
            params,
            closure,
            family,
            losses,
            step_seed=step_seed,
            radius=radius,
            scheme=scheme,
            leave_pending=leave_pending,
            exact_restore=exact_restore,
        )
        self.last = {"candidate_losses": losses, "order": order, "weights": weights}
        return est


class GuidedVectorPolicy(_CandidatePolicy):
    """MeZO-GV: two-point estimate along ``v = mean(top) - mean(bottom)`` of ``M`` candidates.

    ``top = floor(alpha * M)`` lowest-loss candidates (``docs/theory.md`` §2.1); ``M + 2``
    closure calls per step (central). ``normalize`` is explained in :func:`guided_weights`.
    Linear-regime alignment gain: ``zotheory.theory.guided_vector_alignment_gain(M, top)``
    (§5.19; 1.00 / 2.10 / 4.56 / 9.60 for ``M`` = 2 / 4 / 8 / 16, top half).

    Args:
        M: candidates per step (``>= 2``); alpha: top fraction in ``(0, 1)`` with
        ``1 <= floor(alpha M) <= M - 1``; normalize: ``"none"`` or ``"unit_variance"``;
        directions: candidate law (default ``"gaussian"``; ``unit_variance`` assumes
        i.i.d. unit-variance coordinates).
    """

    name = "guided_vector"

    def __init__(
        self, M: int = 8, alpha: float = 0.5, *, normalize: str = "none", directions: str | DirectionFamily = "gaussian"
    ) -> None:
        super().__init__(M, directions)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 < alpha < 1.0):
            raise ValueError(f"alpha must lie in the open interval (0, 1), got alpha={alpha!r}")
        top = math.floor(alpha * self.M)
        if not 1 <= top <= self.M - 1:
            raise ValueError(
                f"alpha={alpha!r} with M={self.M} puts floor(alpha M)={top} candidates on top; need 1..{self.M - 1}"
            )
        self.alpha = float(alpha)
        self.top = top
        self.normalize = _check_normalize(normalize)

    def _weights(self, order: list[int]) -> list[float]:
        return guided_weights(order, self.top, self.normalize)

    def __repr__(self) -> str:
        return f"GuidedVectorPolicy(M={self.M}, alpha={self.alpha}, normalize={self.normalize!r})"


class GreedyPolicy(_CandidatePolicy):
    """MeZO-Greedy: two-point estimate along the lowest-loss of ``M`` fresh candidates.

    ``M + 2`` closure calls per step (central); ties go to the lower index. Linear-regime
    alignment gain ``E[X_(1)^2]`` (``zotheory.theory.greedy_alignment_gain``; 1.00 for
    ``M = 2``, 1.28 / 1.81 / 2.71 / 3.41 for ``M`` = 3 / 5 / 10 / 16, §5.19).
    """

    name = "greedy"

    def __init__(self, M: int = 5, *, directions: str | DirectionFamily = "gaussian") -> None:
        super().__init__(M, directions)

    def _weights(self, order: list[int]) -> list[float]:
        weights = [0.0] * self.M
        weights[order[0]] = 1.0
        return weights

    def __repr__(self) -> str:
        return f"GreedyPolicy(M={self.M})"


class CarriedBestPolicy(DirectionPolicy):
    """The public MeZO-GV code's variant: one new seed against the carried-over best seed.

    Step ``t`` evaluates two candidates at the current ``x``: the new direction
    ``(step_seed, 0)`` and the best direction of step ``t - 1`` (regenerated from its seed;
    at the first step, a second fresh direction ``(step_seed, 1)``), then the two-point
    estimate along ``v = z_best - z_worst`` (``normalize="none"``, as the code; or divided
    by ``sqrt(2)`` with ``"unit_variance"``), and carries the winner's seed to the next
    step. ``docs/theory.md`` §2.2: 2 + 2 = 4 closure calls at every step, the first
    included. Ties go to the new candidate.

    Not i.i.d.: the carried seed can win repeatedly and act as a persistent prior direction,
    so the ``M = 2`` "no gain" law of §5.19 does not apply (measured separately).
    State: the carried ``(seed, j)`` (two integers), saved in :meth:`state_dict` and only
    updated after the step's estimate succeeded.
    """

    name = "carried_best"

    def __init__(self, *, normalize: str = "none", directions: str | DirectionFamily = "gaussian") -> None:
        self.normalize = _check_normalize(normalize)
        self.base = get_directions(directions)
        self.best: tuple[int, int] | None = None
        self.last: dict[str, Any] = {}

    def evals_per_step(self, scheme: Scheme, q: int) -> int:
        require_single_direction(q, type(self).__name__)
        return 2 + evaluations_needed(scheme, 1)

    def estimate(
        self,
        params: Sequence[torch.Tensor],
        closure: Callable[[], Any],
        *,
        step_seed: int,
        radius: float,
        scheme: Scheme,
        q: int,
        leave_pending: bool,
        exact_restore: bool,
    ) -> ZOEstimate:
        require_single_direction(q, type(self).__name__)
        picks = [(int(step_seed), 0), (int(step_seed), 1) if self.best is None else self.best]
        cand = PinnedCombinations(self.base, [[(s, j, 1.0)] for s, j in picks], step_seed)
        losses = evaluate_candidates(
            params, closure, cand, step_seed=step_seed, n=2, radius=radius, exact_restore=exact_restore
        )
        order = _ascending(losses)
        w = 1.0 if self.normalize == "none" else 1.0 / math.sqrt(2.0)
        best, worst = picks[order[0]], picks[order[1]]
        family = PinnedCombinations(self.base, [[(best[0], best[1], w), (worst[0], worst[1], -w)]], step_seed)
        est = estimate_along(
            params,
            closure,
            family,
            losses,
            step_seed=step_seed,
            radius=radius,
            scheme=scheme,
            leave_pending=leave_pending,
            exact_restore=exact_restore,
        )
        self.last = {"candidate_losses": losses, "picks": picks, "order": order, "carried": self.best}
        self.best = best
        return est

    def state_dict(self) -> dict[str, Any]:
        return {"best": None if self.best is None else [int(self.best[0]), int(self.best[1])]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"best"}:
            raise ValueError(f"CarriedBestPolicy state must have exactly the key 'best', got {sorted(state)}")
        best = state["best"]
        if best is None:
            self.best = None
            return
        if len(best) != 2:
            raise ValueError(f"carried best must be a (seed, j) pair, got {best!r}")
        self.best = (int(best[0]), int(best[1]))

    def __repr__(self) -> str:
        return f"CarriedBestPolicy(normalize={self.normalize!r})"
