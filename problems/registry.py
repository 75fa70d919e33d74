"""Registry of the synthetic problems: ``PROBLEMS`` and :func:`make_problem`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from problems.base import AdditiveNoise, Problem
from problems.logistic import LogisticRegression
from problems.nonconvex import NonconvexSine, Rosenbrock
from problems.nonsmooth import NormProblem
from problems.quadratic import MatrixQuadratic, Quadratic, SeparableLInf

PROBLEMS: dict[str, Callable[..., Problem]] = {
    "quadratic": Quadratic,
    "separable_linf": SeparableLInf,
    "matrix_quadratic": MatrixQuadratic,
    "logistic_regression": LogisticRegression,
    "nonconvex_sine": NonconvexSine,
    "rosenbrock": Rosenbrock,
    "norm": NormProblem,
}


def make_problem(name: str, *, noise_sigma: float | None = None, **kwargs: Any) -> Problem:
    """Build the problem ``name`` with ``kwargs``; ``noise_sigma`` wraps it in :class:`AdditiveNoise`.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid names: {sorted(PROBLEMS)}")
    problem = PROBLEMS[name](**kwargs)
    if noise_sigma is not None:
        problem = AdditiveNoise(problem, noise_sigma)
    return problem
