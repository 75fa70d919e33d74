"""The options every zeroth-order estimator shares, declared once.

Every method of :mod:`zotheory.optim` estimates the gradient the same way (``docs/theory.md`` §1): ``q``
directions of a family, a smoothing radius ``eps``, a finite-difference scheme, seed replay and the guards of
:mod:`zotheory.optim.base`. :class:`EstimatorConfig` holds these nine options and checks them; a method's
constructor declares only its own hyper-parameters and passes the rest on as ``**options``
(typed by :class:`EstimatorOptions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from zotheory.directions import DirectionFamily
from zotheory.estimators import Scheme, validate_q, validate_radius, validate_scheme
from zotheory.policies.base import DirectionPolicy

__all__ = ["ESTIMATOR_OPTIONS", "EstimatorConfig", "EstimatorOptions", "OnNonFinite", "RadiusFreeOptions"]

OnNonFinite = Literal["raise", "skip"]


class RadiusFreeOptions(TypedDict, total=False):
    """The shared options but the radius, for a constructor's ``**options`` where the method sets ``eps``."""

    q: int
    directions: str | DirectionFamily
    scheme: Scheme
    seed: int
    on_nonfinite: OnNonFinite
    exact_restore: bool
    check_resolution: bool
    policy: DirectionPolicy | None
    config: EstimatorConfig | None


class EstimatorOptions(RadiusFreeOptions, total=False):
    """The keyword options of :class:`EstimatorConfig`, for typing a constructor's ``**options``."""

    eps: float


@dataclass(frozen=True)
class EstimatorConfig:
    """How the gradient is estimated and guarded (shared by every method).

    Attributes:
        eps: smoothing radius ``r`` of the finite differences (finite, > 0).
        q: directions per step (an int >= 1).
        directions: a family name of :func:`zotheory.directions.get_directions` or an instance.
        scheme: ``central`` (default), ``forward`` or ``one_point``.
        seed: master seed; step ``t`` uses ``mix_seed(seed, t)``.
        on_nonfinite: ``"raise"`` or ``"skip"`` (:mod:`zotheory.optim.base`).
        exact_restore: restore from a copy (bit-exact in any dtype; one extra copy of the parameters while a
            step runs).
        check_resolution: refuse a radius below a tensor's dtype resolution.
        policy: a :class:`~zotheory.policies.base.DirectionPolicy` that chooses the direction(s) of each
            estimate; ``None`` draws ``q`` fresh directions of ``directions``.
    """

    eps: float = 1e-3
    q: int = 1
    directions: str | DirectionFamily = "gaussian"
    scheme: Scheme = "central"
    seed: int = 0
    on_nonfinite: OnNonFinite = "raise"
    exact_restore: bool = False
    check_resolution: bool = True
    policy: DirectionPolicy | None = None

    def __post_init__(self) -> None:
        validate_radius(self.eps)
        validate_q(self.q)
        validate_scheme(self.scheme)
        if self.on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {self.on_nonfinite!r}")

    @classmethod
    def of(cls, owner: str, options: Mapping[str, Any], fixed: Collection[str] = (), **values: Any) -> EstimatorConfig:
        """The config of ``owner`` (a class name, for messages) from its caller's ``options`` and the ``values``
        the method sets itself; an option of ``fixed`` or an unknown one is a ``TypeError`` naming it.

        ``options`` holds the shared options one by one or a whole ``config`` (then its non-default fields count
        as given); ``values`` take precedence over both.
        """
        options = dict(options)
        given = options.pop("config", None)
        if given is not None:
            if not isinstance(given, EstimatorConfig):
                raise TypeError(f"{owner}(): config must be an EstimatorConfig, got {given!r}")
            if options:
                raise TypeError(
                    f"{owner}(): give the estimator options either as config or one by one, not both: {sorted(options)}"
                )
            options = {
                f.name: getattr(given, f.name)
                for f in dataclasses.fields(given)
                if getattr(given, f.name) is not f.default and getattr(given, f.name) != f.default
            }
        for key in options:
            if key in fixed:
                raise TypeError(f"{owner}() does not take the option {key!r}: the method fixes it")
            if key not in ESTIMATOR_OPTIONS:
                raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")
        return cls(**{**options, **values})


#: Names and defaults of the shared options, in declaration order.
ESTIMATOR_OPTIONS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(EstimatorConfig)}
