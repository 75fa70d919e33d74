"""Nonconvex problems with known ``f*``: a separable sine landscape and chained Rosenbrock."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from problems._util import check_choice, check_float, check_int
from problems.base import Problem

# Largest ``a`` for which ``t + (a/2) sin(2t)`` has no zero on ``t > 0`` (numerically,
# bisection on a 1e-5 grid of [0, 20]); above it spurious stationary points appear.
SINE_UNIQUE_STATIONARY_MAX_A = 4.6033


class NonconvexSine(Problem):
    r"""Separable nonconvex function with exact ``L``, ``f* = 0`` and a unique stationary point.

    .. math::  f(x) = \sum_{i=1}^d \Big[\tfrac12 t_i^2 + \tfrac a2 \sin^2 t_i\Big],
               \qquad t = x - x^\star .

    Per coordinate ``phi(t) = t^2/2 + (a/2) sin^2 t`` has ``phi'(t) = t + (a/2) sin 2t`` and
    ``phi''(t) = 1 + a cos 2t in [1 - a, 1 + a]``, so the Hessian is diagonal with entries in
    that interval:

    * ``L = 1 + a`` (l2), attained at ``x*`` (``t = 0``) and wherever ``t_i in pi Z``;
    * ``lower_curvature = 1 - a``: the smallest Hessian eigenvalue (attained at ``t_i = pi/2``);
      for ``a > 1`` the function is nonconvex (``mu = None``) and ``(a-1)``-weakly convex;
    * ``f* = 0`` at ``x*`` only: ``phi >= t^2/2 > 0`` for ``t != 0``;
    * for ``a <= 4.6033`` the only stationary point is ``x*`` (``phi'(t) = t + (a/2) sin 2t``
      has the sign of ``t``; checked on a grid in the tests), so every stationary point is
      global although f is nonconvex: a clean target for nonconvex rates
      (``docs/theory.md`` §5.22-5.25, ``E||grad f||^2`` decreasing to 0).

    Start: ``x* ~ N(0, I)``, ``x0 = x* + init_radius u/||u||_inf`` with
    ``u ~ Uniform[-1, 1]^d``; the default ``init_radius = 3`` reaches the concave bands
    ``cos 2t < -1/a``.

    Args:
        d: dimension ``>= 1``.
        a: amplitude ``>= 0`` (nonconvex iff ``a > 1``; default 2: ``L = 3``, curvature >= -1).
        init_radius: ``||x0 - x*||_inf``.
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "nonconvex_sine"

    # Buffers registered in __init__, typed here (nn.Module.__getattr__ is typed Tensor | Module).
    xstar_x: Tensor

    def __init__(
        self,
        d: int = 10,
        *,
        a: float = 2.0,
        init_radius: float = 3.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        d = check_int(d, "d", minimum=1)
        self.a = check_float(a, "a", nonnegative=True)
        init_radius = check_float(init_radius, "init_radius", nonnegative=True)
        x_star = torch.randn(d, generator=self._gen("x_star"), dtype=torch.float64)
        u = 2 * torch.rand(d, generator=self._gen("x0"), dtype=torch.float64) - 1
        x0 = x_star + init_radius * u / u.abs().max()
        self._add_block("x", x0, x_star)
        self.L = 1.0 + self.a
        self.L_l2 = self.L
        self.lower_curvature = 1.0 - self.a
        self.is_convex = self.a <= 1.0
        self.mu = (1.0 - self.a) if self.is_convex else None
        self.f_star = 0.0
        self.unique_stationary_point = self.a <= SINE_UNIQUE_STATIONARY_MAX_A

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        t = xs[0] - self.xstar_x
        return (0.5 * t * t + 0.5 * self.a * torch.sin(t) ** 2).sum()


def rosenbrock_gershgorin(d: int, radius: float) -> float:
    """Gershgorin bound on ``max |eigenvalue|`` of the chained-Rosenbrock Hessian on ``[-R, R]^d``.

    Row ``i`` of the (tridiagonal) Hessian: ``H_ii = [i<d](1200 x_i^2 - 400 x_{i+1} + 2) +
    [i>1] 200``, ``H_{i,i+1} = -400 x_i``, ``H_{i,i-1} = -400 x_{i-1}``; with ``|x_j| <= R`` the
    absolute row sum is at most ``[i<d](1200R^2 + 800R + 2) + [i>1](200 + 400R)``.
    """
    r = radius
    first = 1200 * r * r + 800 * r + 2
    last = 200 + 400 * r
    interior = first + last
    if d == 2:
        return max(first, last)
    return max(first, last, interior)


def _rosenbrock_hessian64(x: Tensor) -> Tensor:
    d = x.numel()
    h = torch.zeros(d, d, dtype=torch.float64)
    i = torch.arange(d - 1)
    h[i, i] += 1200 * x[:-1] ** 2 - 400 * x[1:] + 2
    h[i + 1, i + 1] += 200.0
    h[i, i + 1] = -400 * x[:-1]
    h[i + 1, i] = -400 * x[:-1]
    return h


class Rosenbrock(Problem):
    r"""Chained Rosenbrock function: nonconvex, ``f* = 0`` at ``(1, ..., 1)``, *not* globally smooth.

    .. math::  f(x) = \sum_{i=1}^{d-1} \big[100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2\big]

    (the "extended"/chained form; Moré, Garbow & Hillstrom, ACM TOMS 7(1), 1981, problem 21
    uses the uncoupled pairs instead). ``f >= 0`` with equality only at ``1`` (each term
    vanishes iff ``x_i = 1`` and ``x_{i+1} = x_i^2``), so ``f* = 0``, ``x* = 1``.

    The Hessian grows like ``1200 x_i^2``, so no global ``L`` exists (``globally_smooth =
    False``). ``L`` is the l2 constant on the box ``[-R, R]^d`` (``R = box_radius``): a bound on
    ``max |eigenvalue of Hessian|`` there, valid for pairs ``x, y`` in the box (the box is
    convex). ``lambda_max(H(x))`` is convex in x (``v^T H(x) v`` is a sum of
    ``1200 v_i^2 x_i^2`` and terms linear in x), so its maximum over the box sits at a vertex:
    for ``d <= 12`` the vertices are enumerated and ``L`` is the exact maximum (``L_is_tight``,
    attained at :attr:`tight_point`), combined with a Gershgorin bound on ``-lambda_min`` (far
    smaller); for larger ``d``, ``L`` is the Gershgorin bound :func:`rosenbrock_gershgorin`,
    which ``x = -R 1`` approaches as ``d`` grows (a tridiagonal Toeplitz interior with
    ``lambda_max -> 1200R^2 + 400R + 202 + 800R``). It is a useful *negative* example: step
    sizes set from ``L`` are valid only while the iterates stay in the box.

    Args:
        d: dimension ``>= 2``.
        box_radius: ``R >= 1.2`` (the box must contain the classic start and ``x*``).
        init: ``"classic"`` (``(-1.2, 1, -1.2, 1, ...)``) or ``"random"`` (uniform in the box).
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "rosenbrock"
    EXACT_MAX_DIM = 12

    def __init__(
        self,
        d: int = 10,
        *,
        box_radius: float = 2.0,
        init: str = "classic",
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        d = check_int(d, "d", minimum=2)
        r = check_float(box_radius, "box_radius", positive=True)
        if r < 1.2:
            raise ValueError(f"box_radius must be >= 1.2 to contain x0 and x*, got box_radius={r}")
        self.init = check_choice(init, "init", ("classic", "random"))
        self.box_radius = r
        if self.init == "classic":
            x0 = torch.tensor([-1.2 if i % 2 == 0 else 1.0 for i in range(d)], dtype=torch.float64)
        else:
            x0 = r * (2 * torch.rand(d, generator=self._gen("x0"), dtype=torch.float64) - 1)
        self._add_block("x", x0, torch.ones(d, dtype=torch.float64))

        gersh = rosenbrock_gershgorin(d, r)
        if d <= self.EXACT_MAX_DIM:
            best, arg = -float("inf"), None
            for signs in itertools.product((-1.0, 1.0), repeat=d):
                v = r * torch.tensor(signs, dtype=torch.float64)
                lam = float(torch.linalg.eigvalsh(_rosenbrock_hessian64(v)).max())
                if lam > best:
                    best, arg = lam, v
            assert arg is not None, "the loop visits all 2^d >= 2 box vertices"
            neg = self._neg_curvature_bound(d, r)
            self.L = max(best, neg)
            self.L_is_tight = best >= neg
            self._tight: Tensor = arg
        else:
            self.L = gersh
            self.L_is_tight = False
            self._tight = -r * torch.ones(d, dtype=torch.float64)
        self.L_l2 = self.L
        self.smoothness_box = r
        self.globally_smooth = False
        self.mu = None
        self.f_star = 0.0

    @staticmethod
    def _neg_curvature_bound(d: int, r: float) -> float:
        """Gershgorin bound on ``-lambda_min`` over the box.

        Every row has ``H_ii - sum_{j != i} |H_ij| >= min_u (1200u^2 - 400|u|) - 400R + 2 - 400R``
        (the first row lacks the ``-400R`` of ``H_{i,i-1}``, the others gain ``+200``, the last
        row is ``200 - 400R``, all above this), with ``min_u (1200u^2 - 400|u|) = -100/3`` at
        ``|u| = 1/6``. ``d`` does not enter.
        """
        lower = -100.0 / 3.0 - 800 * r + 2
        return max(0.0, -lower)

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        x = xs[0]
        return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()

    def tight_point(self) -> list[Tensor]:
        """A box vertex with the largest Hessian eigenvalue (``= L`` when ``L_is_tight``)."""
        return [self._tight.to(self._dtype)]

    def hessian_exact(self, xs: Sequence[Tensor] | None = None) -> Tensor:
        """Closed-form Hessian in float64 (cross-check of autograd)."""
        return _rosenbrock_hessian64(self._point(xs)[0].to(torch.float64).cpu())
