"""Synthetic problems that know their constants.

Each problem is an ``nn.Module`` whose ``forward()`` returns ``f(x)`` from its own
parameters, so the same ``torch.optim.Optimizer`` (closure returning the loss) runs on it and
on an LLM. Each knows ``L`` (and the norm it is measured in), ``L_l2``, ``mu``, ``f_star``,
``x_star`` and the noise variance of its stochastic oracle; see :mod:`problems.base`.

=====================  ==============================  =======================================
name                   class                           good for
=====================  ==============================  =======================================
``quadratic``          :class:`Quadratic`              exact l2 constants, tr A for smoothing
``separable_linf``     :class:`SeparableLInf`          l-infinity geometry: sign vs GD regimes
``matrix_quadratic``   :class:`MatrixQuadratic`        spectral geometry: Muon vs GD regimes
``logistic_regression`` :class:`LogisticRegression`    finite sum, seeded minibatches, sigma^2
``nonconvex_sine``     :class:`NonconvexSine`          nonconvex, exact L, unique stationary pt
``rosenbrock``         :class:`Rosenbrock`             not globally smooth (L on a box only)
``norm``               :class:`NormProblem`            nonsmooth Lipschitz, smoothing bias
=====================  ==============================  =======================================
"""

from problems.base import AdditiveNoise, Problem, StochasticProblem
from problems.logistic import LogisticRegression
from problems.nonconvex import NonconvexSine, Rosenbrock
from problems.nonsmooth import NormProblem
from problems.quadratic import MatrixQuadratic, Quadratic, SeparableLInf
from problems.registry import PROBLEMS, make_problem

__all__ = [
    "PROBLEMS",
    "AdditiveNoise",
    "LogisticRegression",
    "MatrixQuadratic",
    "NonconvexSine",
    "NormProblem",
    "Problem",
    "Quadratic",
    "Rosenbrock",
    "SeparableLInf",
    "StochasticProblem",
    "make_problem",
]
