"""Quadratic problems with exact constants in three geometries: l2, l-infinity, spectral.

* :class:`Quadratic` -- ``1/2 (x-x*)^T A (x-x*) + f*`` with a chosen spectrum (Euclidean).
* :class:`SeparableLInf` -- separable, smooth in the l-infinity norm; a parameter picks the
  regime where sign methods win or the one where gradient descent wins.
* :class:`MatrixQuadratic` -- a matrix block (plus a bias vector) smooth in the spectral
  norm; a parameter picks the regime where spectral (Muon-type) steps win or where GD wins.

Which geometry wins. For an L-smooth convex f in a norm ``||.||``, steepest descent in that
norm (the LMO method with step ``||g||_*/L``) decreases f by at least ``||g||_*^2/(2L)`` per
step and reaches ``f - f* = O(L R^2 / T)`` with ``R = ||x0 - x*||`` (``docs/theory.md``
§4.2, the sharp operator; Kelner et al. / Bernstein & Newhouse's steepest-descent view).
Comparing l-infinity (sign descent) with l2 (GD) therefore compares ``L_inf R_inf^2`` with
``L_2 R_2^2``. With a *dense* start (``R_2^2 ~ d R_inf^2``) and a diagonal Hessian ``D``:
``L_inf = sum_i D_ii`` and ``L_2 = max_i D_ii``, so sign descent wins by the factor
``d max_i D_ii / sum_i D_ii`` -- large when a few coordinates dominate the curvature
(heavy-tailed diagonal), about 1 when the diagonal is flat, where GD (condition number
about 1) wins outright. This is the criterion of Balles, Pedregosa & Le Roux, "The Geometry
of Sign Gradient Descent" (2020): sign methods pay off when ``L_inf`` is much smaller than
``d L_2``. The same reasoning with singular values gives the spectral case
(``||.||_op`` vs Frobenius, rank ``min(m, n)`` instead of ``d``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from problems._util import (
    check_choice,
    check_float,
    check_int,
    check_spectrum,
    flat_band,
    haar_orthogonal,
    power_law,
)
from problems.base import Blocks, Problem

MAX_ROTATED_DIM = 4096


def _geometric_spectrum(d: int, L: float, mu: float) -> Tensor:
    """``d`` eigenvalues from ``L`` down to ``mu``: log-spaced if ``mu > 0``, linear if ``mu = 0``.

    The end points are set exactly, so ``max = L`` and ``min = mu`` bit for bit.
    """
    if d == 1:
        return torch.tensor([L], dtype=torch.float64)
    if mu > 0:
        lam = torch.logspace(math.log10(L), math.log10(mu), d, dtype=torch.float64)
    else:
        lam = torch.linspace(L, 0.0, d, dtype=torch.float64)
    lam[0], lam[-1] = L, mu
    return lam


class Quadratic(Problem):
    r"""Strongly convex quadratic with a chosen spectrum.

    .. math::  f(x) = \tfrac12 (x - x^\star)^\top A (x - x^\star) + f^\star,\qquad
               A = Q\,\mathrm{diag}(\lambda)\,Q^\top

    with ``Q`` Haar-distributed (``rotated=True``) or ``Q = I`` (``rotated=False``: a diagonal
    ``A``, stored as a vector, cheap up to ``d = 10^5`` and beyond). The Hessian is ``A``
    everywhere, so ``L = lambda_max`` and ``mu = lambda_min`` are exact and tight in the l2
    norm: ``||A(x-y)||_2 = L ||x-y||_2`` for ``x - y`` along the top eigenvector
    (:meth:`tight_direction`). ``f* = f_star`` at ``x* ~ N(0, I)``; the start is
    ``x0 = x* + init_radius * u/||u||_2`` (``u ~ N(0, I)``), so ``||x0 - x*||_2 = init_radius``.
    ``trace_A`` and ``trace_A2`` feed the exact smoothing formulas of ``docs/theory.md``
    §3.1 (``f_mu = f + mu^2/2 tr A``; forward-difference second moment).

    Args:
        d: dimension, ``d >= 1``.
        L, mu: largest and smallest eigenvalue, ``0 <= mu <= L``, ``L > 0``; the ``d``
            eigenvalues are log-spaced between them (linearly spaced if ``mu = 0``); ``d = 1``
            needs ``mu == L``. Ignored when ``spectrum`` is given.
        spectrum: explicit eigenvalues (``d`` non-negative values, positive maximum).
        rotated: Haar eigenbasis (``d <= 4096``) or the standard basis.
        f_star: optimal value.
        init_radius: ``||x0 - x*||_2``.
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "quadratic"

    # Buffers registered in __init__, typed here (nn.Module.__getattr__ is typed Tensor | Module).
    A_matrix: Tensor  # rotated=True
    A_diag: Tensor  # rotated=False
    xstar_x: Tensor
    f_star: float

    def __init__(
        self,
        d: int = 10,
        *,
        L: float = 1.0,
        mu: float = 1e-2,
        spectrum: Sequence[float] | Tensor | None = None,
        rotated: bool = True,
        f_star: float = 0.0,
        init_radius: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        d = check_int(d, "d", minimum=1)
        if spectrum is None:
            L = check_float(L, "L", positive=True)
            mu = check_float(mu, "mu", nonnegative=True)
            if mu > L:
                raise ValueError(f"mu must be <= L, got mu={mu} > L={L}")
            if d == 1 and mu != L:
                raise ValueError(f"d=1 has a single eigenvalue: need mu == L, got mu={mu}, L={L}")
            lam = _geometric_spectrum(d, L, mu)
        else:
            lam = check_spectrum(spectrum, "spectrum", d)
        if rotated and d > MAX_ROTATED_DIM:
            raise ValueError(f"rotated=True stores a dense d x d matrix; d={d} > {MAX_ROTATED_DIM}: use rotated=False")
        self.rotated = bool(rotated)
        self.f_star = check_float(f_star, "f_star")
        init_radius = check_float(init_radius, "init_radius", nonnegative=True)
        self.spectrum: Tensor = lam  # float64, CPU: the eigenvalues, in the order of the eigenvectors

        x_star = torch.randn(d, generator=self._gen("x_star"), dtype=torch.float64)
        u = torch.randn(d, generator=self._gen("x0"), dtype=torch.float64)
        x0 = x_star + init_radius * u / torch.linalg.vector_norm(u)
        if self.rotated:
            q = haar_orthogonal(d, self._gen("rotation"))
            a = (q * lam) @ q.T
            a = 0.5 * (a + a.T)
            self.eigenvectors: Tensor | None = q
            self.register_buffer("A_matrix", a.to(self._dtype))
        else:
            self.eigenvectors = None
            self.register_buffer("A_diag", lam.to(self._dtype))
        self._add_block("x", x0, x_star)

        self.L = float(lam.max())
        self.L_l2 = self.L
        self.mu = float(lam.min())
        self.is_convex = True

    @property
    def A(self) -> Tensor:
        """The Hessian ``A`` as a dense matrix (built on the fly when ``rotated=False``)."""
        if self.rotated:
            return self.A_matrix
        return torch.diag(self.A_diag)

    @property
    def trace_A(self) -> float:
        return float(self.spectrum.sum())

    @property
    def trace_A2(self) -> float:
        return float((self.spectrum**2).sum())

    def _quad(self, r: Tensor) -> Tensor:
        if self.rotated:
            return 0.5 * (r @ (self.A_matrix @ r))
        return 0.5 * (self.A_diag * r * r).sum()

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        return self._quad(xs[0] - self.xstar_x) + self.f_star

    def _gap(self, xs: Sequence[Tensor]) -> Tensor:
        return self._quad(xs[0] - self.xstar_x)

    def tight_direction(self) -> Blocks:
        """Unit vector ``v`` (top eigenvector) with ``||grad f(x+v) - grad f(x)||_2 = L`` for every x."""
        i = int(torch.argmax(self.spectrum))
        if self.eigenvectors is not None:  # rotated=True
            v = self.eigenvectors[:, i].clone()
        else:
            v = torch.zeros(self.dim, dtype=torch.float64)
            v[i] = 1.0
        return [v.to(self._dtype)]


class SeparableLInf(Problem):
    r"""Separable problem, smooth in the l-infinity norm, with a regime switch sign-vs-GD.

    .. math::  f(x) = \sum_{i=1}^d l_i\,\phi(x_i - x^\star_i),\qquad
               \phi(t) = t^2/2 \;(\texttt{phi="quadratic"})\ \text{or}\ \log\cosh t
               \;(\texttt{phi="logcosh"}),

    ``f* = 0`` at ``x*``. The Hessian is ``D(x) = diag(l_i phi''(x_i - x*_i))`` with
    ``0 < phi'' <= 1 = phi''(0)`` (``sech^2`` for log-cosh). Constants:

    * ``L`` (``smoothness_norm = "linf"``) ``= sum_i l_i``:
      ``||grad f(x) - grad f(y)||_1 = sum_i l_i |phi'(s_i) - phi'(t_i)| <= sum_i l_i |x_i - y_i|
      <= (sum_i l_i) ||x - y||_inf`` (``phi'`` is 1-Lipschitz). For a constant diagonal
      Hessian this is the ``inf -> 1`` operator norm ``max_{s in {+-1}^d} ||D s||_1``. Tight:
      for the quadratic, equality for every pair with ``x - y = t * (+-1, ..., +-1)``
      (:meth:`tight_direction`); for log-cosh, in the limit of such pairs shrinking to x*.
    * ``L_l2 = max_i l_i`` (the ``2 -> 2`` norm of ``D``), tight in the same way along ``e_{argmax}``.
    * ``mu = min_i l_i`` for the quadratic -- the same number in l2 and in l-infinity:
      ``v^T D v >= min_i l_i ||v||_2^2 >= min_i l_i ||v||_inf^2``, equality at ``v = e_{argmin}``;
      ``mu = 0.0`` for log-cosh (convex, linear growth at infinity).

    Regimes (curvatures ``l_i``, largest ``max_curvature``):

    * ``regime="sign"``: heavy-tailed ``l_i = max_curvature * i^(-power)``. ``L / L_l2 =
      sum_i i^(-power) <= zeta(power)`` (1.64 for power 2), far below ``d``: with the dense
      start below, sign descent's bound ``L R_inf^2`` beats GD's ``L_l2 R_2^2 ~ d L_l2
      R_inf^2`` by a factor of order ``d``, and GD also suffers the condition number
      ``d^power``. Sign / l-infinity LMO methods should win.
    * ``regime="gd"``: flat ``l_i`` evenly spaced in ``[max_curvature/2, max_curvature]``:
      ``L ~ 0.75 d L_l2``, the two bounds coincide up to the density of the gradient, and GD
      converges linearly with condition number 2. GD should win.
    * ``curvatures=...``: explicit ``l_i`` (``regime`` is then reported as ``"custom"``).

    Start: ``x* ~ N(0, I)``, ``x0 = x* + init_radius * u/||u||_inf`` with
    ``u ~ Uniform[-1, 1]^d`` (dense), so ``||x0 - x*||_inf = init_radius`` exactly.

    Args:
        d: dimension ``>= 1``.
        regime: ``"sign"`` or ``"gd"`` (see above).
        max_curvature: ``max_i l_i > 0``.
        power: decay exponent of the ``"sign"`` regime, ``> 0``.
        curvatures: explicit non-negative ``l_i`` with a positive maximum.
        phi: ``"quadratic"`` or ``"logcosh"``.
        init_radius: ``||x0 - x*||_inf``.
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "separable_linf"

    # Buffers registered in __init__, typed here (nn.Module.__getattr__ is typed Tensor | Module).
    l_vec: Tensor  # the curvatures l_i in the problem dtype
    xstar_x: Tensor

    def __init__(
        self,
        d: int = 100,
        *,
        regime: str = "sign",
        max_curvature: float = 1.0,
        power: float = 2.0,
        curvatures: Sequence[float] | Tensor | None = None,
        phi: str = "quadratic",
        init_radius: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        d = check_int(d, "d", minimum=1)
        self.phi = check_choice(phi, "phi", ("quadratic", "logcosh"))
        if curvatures is not None:
            lvec = check_spectrum(curvatures, "curvatures", d)
            self.regime = "custom"
        else:
            self.regime = check_choice(regime, "regime", ("sign", "gd"))
            max_curvature = check_float(max_curvature, "max_curvature", positive=True)
            power = check_float(power, "power", positive=True)
            lvec = power_law(d, max_curvature, power) if self.regime == "sign" else flat_band(d, max_curvature)
        init_radius = check_float(init_radius, "init_radius", nonnegative=True)
        self.curvatures: Tensor = lvec  # float64, CPU

        x_star = torch.randn(d, generator=self._gen("x_star"), dtype=torch.float64)
        u = 2 * torch.rand(d, generator=self._gen("x0"), dtype=torch.float64) - 1
        x0 = x_star + init_radius * u / u.abs().max()
        self.register_buffer("l_vec", lvec.to(self._dtype))
        self._add_block("x", x0, x_star)

        self.smoothness_norm = "linf"
        self.L = float(lvec.sum())
        self.L_l2 = float(lvec.max())
        self.mu = float(lvec.min()) if self.phi == "quadratic" else 0.0
        self.f_star = 0.0
        self.is_convex = True

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        r = xs[0] - self.xstar_x
        if self.phi == "quadratic":
            return 0.5 * (self.l_vec * r * r).sum()
        # log cosh t = t + softplus(-2t) - log 2: smooth (autograd's second derivative is
        # sech^2 t also at t = 0) and overflow-free.
        lc = r + torch.nn.functional.softplus(-2.0 * r) - math.log(2.0)
        return (self.l_vec * lc).sum()

    def tight_direction(self) -> Blocks:
        """``v = (1, ..., 1)``: ``||grad f(x+tv) - grad f(x)||_1 = L t ||v||_inf`` (quadratic phi)."""
        return [torch.ones(self.dim, dtype=self._dtype)]


def _sorted_desc(t: Tensor) -> Tensor:
    return torch.sort(t, descending=True).values


class MatrixQuadratic(Problem):
    r"""Matrix quadratic, smooth in the spectral norm, with a bias block and a regime switch.

    .. math::  f(X, b) = \tfrac12\,\mathrm{tr}\big(H_L\,\Delta\,H_R\,\Delta^\top\big)
               + \tfrac12 \sum_j c_j (b_j - b^\star_j)^2,\qquad \Delta = X - X^\star,

    ``X`` of shape ``(m, n)``, ``b`` of length ``m`` (``bias=True``), ``H_L = Q_L diag(lambda)
    Q_L^T`` (``m x m``), ``H_R = Q_R diag(rho) Q_R^T`` (``n x n``), Haar ``Q`` if ``rotated``.
    ``grad_X f = H_L Delta H_R``, the Hessian is ``H_R (x) H_L`` on ``X`` and ``diag(c)`` on ``b``;
    ``f* = 0`` at ``(X*, b*)``. This is ``1/2 ||A Delta B||_F^2`` with ``A^T A = H_L``,
    ``B B^T = H_R``: a linear layer's least-squares loss with correlated inputs/outputs.

    Constants (``lambda``, ``rho`` sorted decreasingly, ``r = min(m, n)``):

    * spectral constant of the matrix block, ``L_spec = sum_{i<=r} lambda_i rho_i``:
      ``||H_L D H_R||_nuc <= sum_i sigma_i(H_L) sigma_i(D) sigma_i(H_R) <= L_spec ||D||_op``
      (Horn's weak majorisation of singular values of products, applied twice; Horn &
      Johnson, *Topics in Matrix Analysis*, Thm 3.3.14), with equality at
      ``D = U_L[:, :r] U_R[:, :r]^T`` (top eigenvectors; :meth:`tight_direction`). For
      ``H_L = L I``, ``H_R = I``: ``L_spec = L min(m, n)``, as ``||.||_nuc <= sqrt(r)||.||_F
      <= r ||.||_op``.
    * bias constant in l-infinity, ``L_b = sum_j c_j`` (as in :class:`SeparableLInf`).
    * ``smoothness_norm``: ``"product"`` with ``block_norms = ("spectral", "linf")``, i.e.
      ``||(X, b)|| = max(||X||_op, ||b||_inf)``, dual ``||G||_nuc + ||g||_1``; the problem is
      block-separable, so ``block_L = (L_spec, L_b)`` and ``L = L_spec + L_b`` (tight: both
      worst directions at once). Without bias: ``"spectral"`` and ``L = L_spec``.
    * ``L_l2 = max(lambda_1 rho_1, max_j c_j)``; ``mu = min(lambda_m rho_n, min_j c_j)``, which
      is also the strong-convexity modulus in the product norm (``tr(H_L D H_R D^T) >=
      lambda_min rho_min ||D||_F^2 >= lambda_min rho_min ||D||_op^2``, equality at a rank-one
      ``D`` on the bottom eigenvectors).

    Regimes (``H_R = I`` unless ``right_spectrum`` is given):

    * ``regime="spectral"`` (Muon-friendly): ``lambda_i = max_curvature * i^(-power)`` and
      ``c_j = max_curvature * j^(-power)``: a few dominant curvature directions, so
      ``L_spec / L_l2 <= zeta(power)`` instead of ``r``. The start error ``Delta_0`` is a
      Gaussian matrix scaled to ``||Delta_0||_op = init_radius`` (all singular values of the
      same order, ``||Delta_0||_F^2 ~ r ||Delta_0||_op^2``), so the spectral bound
      ``L R_op^2`` beats GD's ``L_l2 R_F^2`` by a factor of order ``r``; moreover, for
      ``m = n``, invertible ``H_L`` and ``H_R = I``, the polar factor of ``grad_X f = H_L Delta``
      is ``Delta`` itself when ``Delta`` is orthogonal (``H_L Q (Q^T H_L^2 Q)^(-1/2) = Q``), so
      spectral steps ignore the conditioning that slows GD. Spectral / Muon-type LMO steps should win. Sign steps do
      not benefit (the Haar rotation makes the curvature non-diagonal).
    * ``regime="flat"``: ``lambda``, ``c`` evenly spaced in ``[max_curvature/2, max_curvature]``:
      ``L_spec ~ 0.75 r L_l2``, condition number 2: GD should win.

    Start: ``X*``, ``b*`` with ``N(0, 1)`` entries, ``X0 = X* + init_radius G/||G||_op``
    (``G`` Gaussian), ``b0 = b* + init_radius u/||u||_inf`` (``u ~ Uniform[-1, 1]^m``), so
    ``||x0 - x*|| = init_radius`` in the product norm.

    Args:
        m, n: matrix shape (``>= 1``).
        regime: ``"spectral"`` or ``"flat"``.
        max_curvature, power: as in :class:`SeparableLInf`.
        left_spectrum, right_spectrum, bias_curvatures: explicit ``lambda`` (``m``),
            ``rho`` (``n``), ``c`` (``m``) overriding the regime's choice.
        bias: include the bias block ``b``.
        rotated: Haar eigenbases for ``H_L``, ``H_R`` (else diagonal).
        init_radius: distance of the start in the product norm.
        seed, dtype: see :class:`~problems.base.Problem`.
    """

    name = "matrix_quadratic"

    # Buffers registered in __init__, typed here (nn.Module.__getattr__ is typed Tensor | Module).
    H_left: Tensor
    H_right: Tensor
    c: Tensor  # bias=True
    xstar_weight: Tensor
    xstar_bias: Tensor  # bias=True
    L_bias: float | None

    def __init__(
        self,
        m: int = 16,
        n: int = 16,
        *,
        regime: str = "spectral",
        max_curvature: float = 1.0,
        power: float = 2.0,
        left_spectrum: Sequence[float] | Tensor | None = None,
        right_spectrum: Sequence[float] | Tensor | None = None,
        bias_curvatures: Sequence[float] | Tensor | None = None,
        bias: bool = True,
        rotated: bool = True,
        init_radius: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(seed=seed, dtype=dtype)
        m = check_int(m, "m", minimum=1)
        n = check_int(n, "n", minimum=1)
        if max(m, n) > MAX_ROTATED_DIM:
            raise ValueError(f"m={m}, n={n}: the factors are dense, keep m, n <= {MAX_ROTATED_DIM}")
        self.regime = check_choice(regime, "regime", ("spectral", "flat"))
        max_curvature = check_float(max_curvature, "max_curvature", positive=True)
        power = check_float(power, "power", positive=True)
        init_radius = check_float(init_radius, "init_radius", nonnegative=True)

        def preset(k: int) -> Tensor:
            return power_law(k, max_curvature, power) if self.regime == "spectral" else flat_band(k, max_curvature)

        lam = preset(m) if left_spectrum is None else check_spectrum(left_spectrum, "left_spectrum", m)
        rho = (
            torch.ones(n, dtype=torch.float64)
            if right_spectrum is None
            else check_spectrum(right_spectrum, "right_spectrum", n)
        )
        c = preset(m) if bias_curvatures is None else check_spectrum(bias_curvatures, "bias_curvatures", m)
        self.left_spectrum: Tensor = lam
        self.right_spectrum: Tensor = rho
        self.bias_curvatures: Tensor | None = c if bias else None
        self.has_bias = bool(bias)
        self.rotated = bool(rotated)

        if self.rotated:
            ql = haar_orthogonal(m, self._gen("rotation_left"))
            qr = haar_orthogonal(n, self._gen("rotation_right"))
        else:
            ql = torch.eye(m, dtype=torch.float64)
            qr = torch.eye(n, dtype=torch.float64)
        self.left_eigenvectors: Tensor = ql
        self.right_eigenvectors: Tensor = qr
        hl = (ql * lam) @ ql.T
        hr = (qr * rho) @ qr.T
        self.register_buffer("H_left", (0.5 * (hl + hl.T)).to(self._dtype))
        self.register_buffer("H_right", (0.5 * (hr + hr.T)).to(self._dtype))

        x_star = torch.randn(m, n, generator=self._gen("x_star"), dtype=torch.float64)
        g = torch.randn(m, n, generator=self._gen("x0"), dtype=torch.float64)
        x0 = x_star + init_radius * g / torch.linalg.matrix_norm(g, ord=2)
        self._add_block("weight", x0, x_star)
        if self.has_bias:
            b_star = torch.randn(m, generator=self._gen("bias_star"), dtype=torch.float64)
            u = 2 * torch.rand(m, generator=self._gen("bias_x0"), dtype=torch.float64) - 1
            b0 = b_star + init_radius * u / u.abs().max()
            self.register_buffer("c", c.to(self._dtype))
            self._add_block("bias", b0, b_star)

        r = min(m, n)
        self.L_spec = float((_sorted_desc(lam)[:r] * _sorted_desc(rho)[:r]).sum())
        l2_x = float(lam.max() * rho.max())
        mu_x = float(lam.min() * rho.min())
        if self.has_bias:
            self.L_bias = float(c.sum())
            self.smoothness_norm = "product"
            self.block_norms = ("spectral", "linf")
            self.block_L = (self.L_spec, self.L_bias)
            self.L = self.L_spec + self.L_bias
            self.L_l2 = max(l2_x, float(c.max()))
            self.mu = min(mu_x, float(c.min()))
        else:
            self.L_bias = None
            self.smoothness_norm = "spectral"
            self.block_norms = None
            self.block_L = (self.L_spec,)
            self.L = self.L_spec
            self.L_l2 = l2_x
            self.mu = mu_x
        self.f_star = 0.0
        self.is_convex = True

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        delta = xs[0] - self.xstar_weight
        f = 0.5 * ((self.H_left @ delta @ self.H_right) * delta).sum()
        if self.has_bias:
            rb = xs[1] - self.xstar_bias
            f = f + 0.5 * (self.c * rb * rb).sum()
        return f

    def tight_direction(self) -> Blocks:
        """Direction ``v`` of product norm 1 with ``||grad f(x+v) - grad f(x)||_* = L`` for every x.

        Matrix part ``U_L[:, :r] U_R[:, :r]^T`` (eigenvectors of the ``r`` largest
        eigenvalues of ``H_L`` and ``H_R``), bias part ``(1, ..., 1)``.
        """
        m, n = self.left_spectrum.numel(), self.right_spectrum.numel()
        r = min(m, n)
        il = torch.argsort(self.left_spectrum, descending=True)[:r]
        ir = torch.argsort(self.right_spectrum, descending=True)[:r]
        v = self.left_eigenvectors[:, il] @ self.right_eigenvectors[:, ir].T
        out = [v.to(self._dtype)]
        if self.has_bias:
            out.append(torch.ones(m, dtype=self._dtype))
        return out
