"""The optimizer registry: name -> constructor, declared cost (closure calls, state) and a test config.

Every entry is exercised by the conformance suite ``tests/test_optimizers.py`` and by
``benchmarks/optimizer_overhead.py``; registering a method (``register_optimizer``) is how a new method
gets tested and benchmarked. Declarations are functions of the configuration so that they can be checked:

* ``evals_per_step(config)``: closure calls of one ``step`` (must equal the optimizer's
  :attr:`~zotheory.optim.base.ZOOptimizer.evals_per_step` and the calls counted in a step);
* ``state_multiple(config)``: per-parameter state tensors, in units of the parameters' element count in
  the state dtype (fp32 for half-precision parameters): 0 (ZO-SGD), 1 (momentum, JAGUAR memory), 2 (Adam),
  3 (AMSGrad). ``declared_state_bytes`` turns it into bytes for given parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from zotheory.estimators import evaluations_needed
from zotheory.optim.adam import ZOAdam
from zotheory.optim.base import ZOOptimizer, _state_dtype
from zotheory.optim.jaguar import JaguarMuon, JaguarSignSGD
from zotheory.optim.muon import MatrixEfficientZOMuon, ZOMuon, muon_param_groups
from zotheory.optim.sign import ZOSGDSign, ZOSignSGD
from zotheory.optim.zolmo import ZOLMO
from zotheory.optim.zosgd import ZOSGD

__all__ = [
    "OPTIMIZERS",
    "OptimizerSpec",
    "declared_state_bytes",
    "dense_reference",
    "make_optimizer",
    "register_optimizer",
]

Config = Mapping[str, Any]


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered method.

    Attributes:
        name: registry key (lower-case, dashes).
        factory: ``factory(params, **config) -> ZOOptimizer``; ``params`` as for a torch optimizer
            (tensors, ``(name, tensor)`` pairs, or parameter groups).
        evals_per_step: declared closure calls per step as a function of the config.
        state_multiple: declared state, in parameter-sized buffers, as a function of the config.
        test_config: a configuration that makes progress on the small problems of the test suite
            (float64, d ~ 30); not a recommendation for LLMs.
        description: one line: the method and its source.
        reference: ``reference(optimizer, params) -> ReferenceOptimizer`` building the dense reference
            implementation that mirrors ``optimizer`` on copies ``params`` (:mod:`zotheory.optim.reference`),
            or ``None``.
    """

    name: str
    factory: Callable[..., ZOOptimizer]
    evals_per_step: Callable[[Config], int]
    state_multiple: Callable[[Config], float]
    test_config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    reference: Callable[..., Any] | None = None

    def make(self, params: Iterable[Any], **config: Any) -> ZOOptimizer:
        return self.factory(params, **config)


_REGISTRY: dict[str, OptimizerSpec] = {}
#: Read-only view of the registry (name -> :class:`OptimizerSpec`).
OPTIMIZERS: Mapping[str, OptimizerSpec] = MappingProxyType(_REGISTRY)


def register_optimizer(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add ``spec`` to :data:`OPTIMIZERS` (``ValueError`` if the name is taken, unless ``replace``)."""
    if not isinstance(spec, OptimizerSpec):
        raise TypeError(f"register_optimizer expects an OptimizerSpec, got {type(spec).__name__}")
    if not spec.name or not isinstance(spec.name, str):
        raise ValueError(f"optimizer name must be a non-empty string, got {spec.name!r}")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"optimizer {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def make_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> ZOOptimizer:
    """``OPTIMIZERS[name].factory(params, **kwargs)`` (class defaults for what ``kwargs`` leaves out)."""
    try:
        spec = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None
    return spec.factory(params, **kwargs)


def declared_state_bytes(spec: OptimizerSpec, params: Sequence[torch.Tensor], config: Config) -> int:
    """``state_multiple(config) * sum_p numel(p) * itemsize(state dtype of p)``."""
    per_param = sum(p.numel() * torch.empty((), dtype=_state_dtype(p)).element_size() for p in params)
    return int(round(spec.state_multiple(config) * per_param))


# ---------------------------------------------------------------------------------------------- helpers
def _central_evals(config: Config) -> int:
    return evaluations_needed(config.get("scheme", "central"), config.get("q", 1))


def _routed(params: Iterable[Any], *, key: str, hidden: str, other: str) -> list[Any]:
    """Parameter groups as given, or the hidden-matrix split of :func:`muon_param_groups`."""
    items = list(params)
    if items and isinstance(items[0], dict):
        return items
    return muon_param_groups(items, key=key, hidden=hidden, other=other)


def _muon_factory(cls: type[ZOOptimizer], other: str, **fixed: Any) -> Callable[..., ZOOptimizer]:
    """``cls`` on the hidden-matrix split (``other`` rule for the rest), with ``fixed`` default options."""

    def factory(params: Iterable[Any], **config: Any) -> ZOOptimizer:
        return cls(_routed(params, key="update", hidden="muon", other=other), **{**fixed, **config})

    factory.__name__ = f"make_{cls.__name__}"
    return factory


def _zolmo_factory(
    params: Iterable[Any], *, matrix_norm: str = "spectral", other_norm: str = "linf", **config: Any
) -> ZOOptimizer:
    return ZOLMO(_routed(params, key="norm", hidden=matrix_norm, other=other_norm), **config)


def dense_reference(name: str) -> Callable[..., Any]:
    """``reference`` field for a spec: builds ``REFERENCES[name]`` of :mod:`zotheory.optim.reference` lazily
    (that module imports the optimizers, so it cannot be imported while they register)."""

    def build(optimizer: ZOOptimizer, params: Sequence[torch.Tensor]) -> Any:
        from zotheory.optim import reference

        return reference.REFERENCES[name](optimizer, params)

    return build


# ---------------------------------------------------------------------------------------------- entries
_BUILTIN = [
    OptimizerSpec(
        name="zo-sgd",
        factory=ZOSGD,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("momentum", 0.0) > 0 else 0.0,
        test_config={"lr": 0.02, "eps": 1e-3},
        description="MeZO / ZO-SGD (Malladi et al. 2023, Alg. 1)",
        reference=dense_reference("zo-sgd"),
    ),
    OptimizerSpec(
        name="zo-sgd-mmt",
        factory=lambda params, momentum=0.9, **c: ZOSGD(params, momentum=momentum, **c),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("momentum", 0.9) > 0 else 0.0,
        test_config={"lr": 0.004, "eps": 1e-3, "momentum": 0.8},
        description="ZO-SGD with heavy-ball momentum (ZO-Bench ZO-SGD-MMT)",
        reference=dense_reference("zo-sgd"),
    ),
    OptimizerSpec(
        name="zo-signsgd",
        factory=ZOSignSGD,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 0.0,
        test_config={"lr": 0.01, "eps": 1e-3, "q": 4},
        description="ZO-signSGD, coordinate-wise sign of the estimate (Liu et al. ICLR 2019)",
        reference=dense_reference("zo-signsgd"),
    ),
    OptimizerSpec(
        name="zo-sgd-sign",
        factory=ZOSGDSign,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 0.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="ZO-SGD-Sign, sign of the scalar projected gradient times z (ZO-Bench)",
        reference=dense_reference("zo-sgd-sign"),
    ),
    OptimizerSpec(
        name="zo-adam",
        factory=ZOAdam,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 3.0 if c.get("amsgrad", False) else 2.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="ZO-Adam: Adam on the ZO estimate (ZO-Bench)",
        reference=dense_reference("zo-adam"),
    ),
    OptimizerSpec(
        name="zo-adamm",
        factory=lambda params, amsgrad=True, **c: ZOAdam(params, amsgrad=amsgrad, **c),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 3.0 if c.get("amsgrad", True) else 2.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="ZO-AdaMM: AMSGrad on the ZO estimate (Chen et al. NeurIPS 2019)",
        reference=dense_reference("zo-adam"),
    ),
    OptimizerSpec(
        name="jaguar-signsgd",
        factory=JaguarSignSGD,
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5},
        description="JAGUAR SignSGD, one coordinate per step (Petrov et al. 2025, Alg. 1)",
        reference=dense_reference("jaguar"),
    ),
    OptimizerSpec(
        name="jaguar-signsgd-block",
        factory=lambda params, estimator="block", **c: JaguarSignSGD(params, estimator=estimator, **c),
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5, "block_fraction": 0.5},
        description="JAGUAR SignSGD with the public code's block sampling (Rademacher-signed blocks)",
        reference=dense_reference("jaguar"),
    ),
    OptimizerSpec(
        name="jaguar-muon",
        factory=_muon_factory(JaguarMuon, other="sign"),
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5},
        description="JAGUAR Muon, one coordinate per step, cubic NS (Petrov et al. 2025, Alg. 2)",
        reference=dense_reference("jaguar"),
    ),
    OptimizerSpec(
        name="jaguar-muon-block",
        factory=_muon_factory(JaguarMuon, other="sign", estimator="block"),
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5, "block_fraction": 0.5},
        description="JAGUAR Muon with block sampling (the public code's estimator shape)",
        reference=dense_reference("jaguar"),
    ),
    OptimizerSpec(
        name="zo-muon",
        factory=_muon_factory(ZOMuon, other="sgd"),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("momentum", 0.0) > 0 else 0.0,
        test_config={"lr": 0.01, "eps": 1e-3, "momentum": 0.5},
        description="ZO-Muon: Newton-Schulz of the Gaussian estimate (JAGUAR paper App. A.1, Alg. 3)",
        reference=dense_reference("zo-muon"),
    ),
    OptimizerSpec(
        name="zo-muon-orthogonal",
        factory=_muon_factory(MatrixEfficientZOMuon, other="sgd"),
        evals_per_step=lambda c: evaluations_needed(c.get("scheme", "central"), 1),
        state_multiple=lambda c: 0.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="Matrix-efficient ZO-Muon with known polar factors (JAGUAR paper App. A.2, Alg. 4)",
        reference=dense_reference("zo-muon-orthogonal"),
    ),
    OptimizerSpec(
        name="zo-lmo",
        factory=_zolmo_factory,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("beta", 0.9) > 0 else 0.0,
        test_config={"lr": 0.01, "eps": 1e-3, "beta": 0.5},
        description="ZO momentum + per-group LMO (spectral for matrices, sign otherwise by default)",
        reference=dense_reference("zo-lmo"),
    ),
]

for _spec in _BUILTIN:
    register_optimizer(_spec)
