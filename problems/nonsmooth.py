"""A nonsmooth, Lipschitz convex problem: ``f(x) = L0 ||x - x*||_2``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from problems._util import check_choice, check_float, check_int
from problems.base import Problem


def gaussian_norm_mean(d: int) -> float:
    """``E||u||_2`` for ``u ~ N(0, I_d)``: ``sqrt(2) Gamma((d+1)/2) / Gamma(d/2)`` (chi mean)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


class NormProblem(Problem):
    """``f(x) = L0 ||x - x*||_2``: convex, ``L0``-Lipschitz, not differentiable at ``x* ``.

    Constants: ``lipschitz = L0`` (``|f(x) - f(y)| <= L0 ||x - y||_2``, equality along rays from
    ``x*``), ``L = inf`` (no gradient-Lipschitz constant: the gradient ``L0 (x-x*)/||x-x*||``
    jumps across ``x*``), ``mu = 0.0``, ``f* = 0`` at ``x*``.

    Smoothing bias (``docs/theory.md`` §3.1 N3, §3.3 and §5.8): for
    ``f_mu(x) = E_u f(x + mu u)``, the triangle inequality gives
    ``0 <= f_mu(x) - f(x) <= mu L0 E||u||`` with equality at ``x = x*``, so

    * Gaussian ``u``: ``sup_x (f_mu - f) = mu L0 E||u|| = mu L0 sqrt(2) Gamma((d+1)/2)/Gamma(d/2)``,
      below and asymptotically equal to the N3 bound ``mu L0 sqrt(d)``;
    * ``u`` uniform in the unit ball: ``sup_x (f_mu - f) = mu L0 d/(d+1)``.

    :meth:`smoothing_gap_at_optimum` returns these exact values.

    Start: ``x* ~ N(0, I)``, ``x0 = x* + init_radius u/||u||_2``, so ``f(x0) = L0 init_radius``.

    Args:
        d: dimension ``>= 1``.
        L0: Lipschitz constant ``> 0``.
        init_radius: ``||x0 - x*||_2``.
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "norm"

    # Buffers registered in __init__, typed here (nn.Module.__getattr__ is typed Tensor | Module).
    xstar_x: Tensor
    lipschitz: float

    def __init__(
        self,
        d: int = 10,
        *,
        L0: float = 1.0,
        init_radius: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        d = check_int(d, "d", minimum=1)
        self.lipschitz = check_float(L0, "L0", positive=True)
        init_radius = check_float(init_radius, "init_radius", nonnegative=True)
        x_star = torch.randn(d, generator=self._gen("x_star"), dtype=torch.float64)
        u = torch.randn(d, generator=self._gen("x0"), dtype=torch.float64)
        x0 = x_star + init_radius * u / torch.linalg.vector_norm(u)
        self._add_block("x", x0, x_star)
        self.L = math.inf
        self.L_l2 = math.inf
        self.mu = 0.0
        self.f_star = 0.0
        self.is_convex = True
        self.globally_smooth = False

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        return self.lipschitz * torch.linalg.vector_norm(xs[0] - self.xstar_x)

    def smoothing_gap_at_optimum(self, radius: float, dist: str = "gaussian") -> float:
        """Exact ``sup_x (f_r(x) - f(x)) = f_r(x*) - f*`` for Gaussian or uniform-ball smoothing."""
        radius = check_float(radius, "radius", nonnegative=True)
        check_choice(dist, "dist", ("gaussian", "ball"))
        d = self.dim
        mean_norm = gaussian_norm_mean(d) if dist == "gaussian" else d / (d + 1)
        return radius * self.lipschitz * mean_norm
