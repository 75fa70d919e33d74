r"""L2-regularised logistic regression: a finite sum with a seeded minibatch oracle.

.. math::  f(w) = \frac1n \sum_{i=1}^n \log\big(1 + e^{-y_i a_i^\top w}\big)
           + \frac{\lambda}{2}\|w\|_2^2,\qquad
           F(w, B) = \frac1b \sum_{i\in B} \log\big(1 + e^{-y_i a_i^\top w}\big)
           + \frac{\lambda}{2}\|w\|_2^2,

``B`` a uniformly random subset of size ``b`` drawn *without replacement* (so
``E_B F(w, B) = f(w)``). An intercept is obtained by appending a constant feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.functional import softplus

from problems._util import check_float, check_int
from problems.base import StochasticProblem


def _loss_grad_hess(a: Tensor, y: Tensor, reg: float, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Value, gradient and Hessian of the full objective (float64)."""
    n, d = a.shape
    z = y * (a @ w)
    s = torch.sigmoid(-z)
    f = softplus(-z).mean() + 0.5 * reg * (w @ w)
    g = -(a.T @ (y * s)) / n + reg * w
    h = (a.T * (s * (1 - s))) @ a / n + reg * torch.eye(d, dtype=a.dtype)
    return f, g, h


def newton_solve(a: Tensor, y: Tensor, reg: float, *, tol: float = 1e-12, max_iter: int = 100) -> Tensor:
    """Minimiser of the regularised logistic loss by damped Newton in float64.

    Newton's method with Armijo backtracking converges globally on this smooth, strongly
    convex (``reg > 0``) objective and quadratically near the optimum (Boyd & Vandenberghe,
    *Convex Optimization*, section 9.5); stops at ``||grad f||_2 <= tol``.

    Raises:
        RuntimeError: if the gradient norm is still above ``1e-10`` after ``max_iter`` steps.
    """
    w = torch.zeros(a.shape[1], dtype=torch.float64)
    for _ in range(max_iter):
        f, g, h = _loss_grad_hess(a, y, reg, w)
        if float(torch.linalg.vector_norm(g)) <= tol:
            return w
        step = torch.linalg.solve(h, g)
        t, dec = 1.0, float(g @ step)
        while t > 1e-12:
            w_new = w - t * step
            f_new = _loss_grad_hess(a, y, reg, w_new)[0]
            if float(f_new) <= float(f) - 0.25 * t * dec:
                break
            t *= 0.5
        if bool(torch.equal(w_new, w)):
            break
        w = w_new
    gnorm = float(torch.linalg.vector_norm(_loss_grad_hess(a, y, reg, w)[1]))
    if gnorm > 1e-10:
        raise RuntimeError(f"Newton did not converge: ||grad f|| = {gnorm:.3e} after {max_iter} iterations")
    return w


class LogisticRegression(StochasticProblem):
    """Logistic regression on seeded synthetic data, with exact constants and a minibatch oracle.

    Data: ``a_i ~ N(0, I_d / d)`` (so ``||a_i||^2 ~ 1``), a planted ``w_true ~ N(0, signal^2
    I)``, labels ``y_i = +1`` with probability ``sigmoid(a_i^T w_true)``, else ``-1``
    (noisy labels: the data are not separable, and ``x*`` is finite even for tiny ``l2_reg``).

    Constants:

    * ``L = lambda_max(A^T A) / (4n) + l2_reg`` (l2): the Hessian is
      ``A^T diag(s_i(1-s_i)) A / n + l2_reg I`` with ``s_i(1 - s_i) <= 1/4``, equality for all
      ``i`` at ``w = 0``, so L is attained there (:meth:`tight_point`).
    * ``mu = l2_reg``: ``s_i(1-s_i) > 0`` makes the Hessian strictly larger everywhere; ``mu``
      is the infimum (approached as ``|a_i^T w| -> inf``), not attained.
    * ``f_star``, ``x_star``: damped Newton in float64 to ``||grad f|| <= 1e-12``
      (:func:`newton_solve`), at construction.
    * ``noise_variance`` (a global *upper bound*, valid at every ``w``): with sampling without
      replacement, ``E||grad F(w,B) - grad f(w)||^2 = (n-b)/(b(n-1)) * S^2(w)``,
      ``S^2(w) = (1/n) sum_i ||g_i(w) - g(w)||^2`` (the finite-population variance of the
      per-example loss gradients ``g_i = -y_i sigmoid(-y_i a_i^T w) a_i``; Cochran, *Sampling
      Techniques*, Thm 2.2, applied coordinatewise); ``S^2 <= (1/n) sum_i ||g_i||^2 <=
      (1/n) sum_i ||a_i||^2`` because ``0 < sigmoid < 1``. Hence
      ``sigma^2 = (n-b)/(b(n-1)) * (1/n) sum_i ||a_i||^2``. :meth:`noise_variance_at` gives the
      *exact* value at a point (the regulariser is the same in every F and cancels).

    Args:
        n: number of examples ``>= 1``.
        d: number of features ``>= 1``.
        l2_reg: ``> 0`` (strong convexity; makes ``x*`` unique).
        batch_size: ``1 <= b <= n``.
        signal: scale of the planted weights (larger: cleaner labels).
        init_scale: ``x0 ~ init_scale * N(0, I_d / d)``.
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "logistic_regression"

    # Buffers registered in __init__, typed here (nn.Module.__getattr__ is typed Tensor | Module).
    features: Tensor
    labels: Tensor

    def __init__(
        self,
        n: int = 200,
        d: int = 10,
        *,
        l2_reg: float = 1e-2,
        batch_size: int = 10,
        signal: float = 3.0,
        init_scale: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        n = check_int(n, "n", minimum=1)
        d = check_int(d, "d", minimum=1)
        self.l2_reg = check_float(l2_reg, "l2_reg", positive=True)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        if self.batch_size > n:
            raise ValueError(f"batch_size must be <= n={n}, got batch_size={self.batch_size}")
        signal = check_float(signal, "signal", nonnegative=True)
        init_scale = check_float(init_scale, "init_scale", nonnegative=True)
        self.n = n

        a = torch.randn(n, d, generator=self._gen("features"), dtype=torch.float64) / d**0.5
        w_true = signal * torch.randn(d, generator=self._gen("planted"), dtype=torch.float64)
        p = torch.sigmoid(a @ w_true)
        uniform = torch.rand(n, generator=self._gen("labels"), dtype=torch.float64)
        y = torch.where(uniform < p, 1.0, -1.0).to(torch.float64)
        self.features64, self.labels64 = a, y  # float64 copies for exact computations
        self.w_true = w_true

        w_star = newton_solve(a, y, self.l2_reg)
        x0 = init_scale * torch.randn(d, generator=self._gen("x0"), dtype=torch.float64) / d**0.5
        self.register_buffer("features", a.to(self._dtype))
        self.register_buffer("labels", y.to(self._dtype))
        self._add_block("w", x0, w_star)

        self.L = float(torch.linalg.eigvalsh(a.T @ a).max()) / (4 * n) + self.l2_reg
        self.L_l2 = self.L
        self.mu = self.l2_reg
        self.f_star = float(_loss_grad_hess(a, y, self.l2_reg, w_star)[0])
        b = self.batch_size
        self.sampling_factor = 0.0 if b == n else (n - b) / (b * (n - 1))
        self.noise_variance = self.sampling_factor * float((a * a).sum(dim=1).mean())
        self.is_convex = True

    def _loss(self, w: Tensor, a: Tensor, y: Tensor) -> Tensor:
        return softplus(-y * (a @ w)).mean() + 0.5 * self.l2_reg * (w * w).sum()

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        return self._loss(xs[0], self.features, self.labels)

    def draw_sample(self, seed: int) -> Tensor:
        """Indices of a minibatch of ``batch_size`` distinct examples."""
        perm = torch.randperm(self.n, generator=self._gen("minibatch", seed))
        return perm[: self.batch_size].to(self.features.device)

    def sample_objective(self, xs: Sequence[Tensor], sample: Tensor) -> Tensor:
        idx = sample.to(self.features.device)
        return self._loss(xs[0], self.features[idx], self.labels[idx])

    def per_example_gradients(self, xs: Sequence[Tensor] | None = None) -> Tensor:
        """``(n, d)`` float64 matrix of the loss gradients ``g_i(w)`` (regulariser excluded)."""
        w = self._point(xs)[0].detach().to(torch.float64).cpu()
        a, y = self.features64, self.labels64
        s = torch.sigmoid(-y * (a @ w))
        return -(y * s)[:, None] * a

    def noise_variance_at(self, xs: Sequence[Tensor] | None = None) -> float:
        """Exact ``E_B ||grad F(w, B) - grad f(w)||^2 = (n-b)/(b(n-1)) S^2(w)`` (float64)."""
        g = self.per_example_gradients(xs)
        s2 = float(((g - g.mean(dim=0)) ** 2).sum(dim=1).mean())
        return self.sampling_factor * s2

    def tight_point(self) -> list[Tensor]:
        """``w = 0``, where the largest Hessian eigenvalue equals ``L`` exactly."""
        return [torch.zeros(self.dim, dtype=self._dtype)]
