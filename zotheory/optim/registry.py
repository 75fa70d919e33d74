"""The optimizer registry: every method, declared in this one module with its options, cost and test config.

Each entry names a class (or a preset of one: changed defaults, a parameter-group routing) whose keyword
options can be read without building an optimizer: :meth:`OptimizerSpec.parameters` (or
``inspect.signature(spec.factory)``) gives the method's own hyper-parameters followed by the shared estimator
options of :class:`~zotheory.optim.config.EstimatorConfig` it takes, with their defaults.

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

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from zotheory.estimators import evaluations_needed
from zotheory.optim.adam import ZOAdam
from zotheory.optim.adanaged import DEFAULT_STEP_RULE, AdaNAGED, get_step_rule
from zotheory.optim.base import ZOOptimizer, _state_dtype
from zotheory.optim.jaguar import JaguarMuon, JaguarSignSGD
from zotheory.optim.muon import MatrixEfficientZOMuon, ZOMuon, muon_param_groups
from zotheory.optim.parameter_free import ZOPOEM, ZOALIASSign, ZODoG
from zotheory.optim.reference import REFERENCES
from zotheory.optim.sign import ZOSGDSign, ZOSignSGD
from zotheory.optim.zolmo import ZOLMO
from zotheory.optim.zosgd import ZOSGD

__all__ = [
    "OPTIMIZERS",
    "OptimizerSpec",
    "declared_state_bytes",
    "make_optimizer",
    "preset",
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
        category: the kind of method (``sgd``, ``sign``, ``adaptive``, ``jaguar``, ``muon``, ``lmo``,
            ``parameter-free``), for listings.
    """

    name: str
    factory: Callable[..., ZOOptimizer]
    evals_per_step: Callable[[Config], int]
    state_multiple: Callable[[Config], float]
    test_config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    reference: Callable[..., Any] | None = None
    category: str = ""

    def make(self, params: Iterable[Any], **config: Any) -> ZOOptimizer:
        """``factory(params, **config)``."""
        return self.factory(params, **config)

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The method's options given by name (name -> parameter with its default), read from the factory's
        signature without building an optimizer; ``params`` and ``config`` (all shared options at once) left out."""
        return {
            name: p
            for name, p in inspect.signature(self.factory).parameters.items()
            if name not in ("params", "config") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }


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


# ---------------------------------------------------------------------------------------------- presets
def _central_evals(config: Config) -> int:
    return evaluations_needed(config.get("scheme", "central"), config.get("q", 1))


def _routed(params: Iterable[Any], *, key: str, hidden: str, other: str) -> list[Any]:
    """Parameter groups as given, or the hidden-matrix split of :func:`muon_param_groups`."""
    items = list(params)
    if items and isinstance(items[0], dict):
        return items
    return muon_param_groups(items, key=key, hidden=hidden, other=other)


Router = Callable[..., list[Any]]


def muon_routing(other: str) -> Router:
    """Hidden matrices to ``update="muon"``, the rest to ``other`` (parameter groups pass unchanged)."""

    def route(params: Iterable[Any]) -> list[Any]:
        return _routed(params, key="update", hidden="muon", other=other)

    return route


def lmo_routing(params: Iterable[Any], *, matrix_norm: str = "spectral", other_norm: str = "linf") -> list[Any]:
    """Hidden matrices to ``norm=matrix_norm``, the rest to ``other_norm`` (parameter groups pass unchanged)."""
    return _routed(params, key="norm", hidden=matrix_norm, other=other_norm)


def preset(cls: type[ZOOptimizer], *, route: Router | None = None, **defaults: Any) -> Callable[..., ZOOptimizer]:
    """A factory for ``cls`` with changed ``defaults`` and optionally a parameter ``route``r applied first.

    Its signature is declared, not forwarded: ``cls``'s parameters with the new defaults, then the keyword
    options of ``route`` (``inspect.signature`` reads it without building anything). An unknown option is a
    ``TypeError`` naming it, as for the class itself.
    """
    own = inspect.signature(cls).parameters
    unknown = sorted(set(defaults) - set(own))
    if unknown:
        raise TypeError(f"preset of {cls.__name__}: unknown option(s) {unknown}")
    routed = [] if route is None else [p for name, p in inspect.signature(route).parameters.items() if name != "params"]
    signature = inspect.Signature(
        [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in own.values()] + routed
    )
    route_names = {p.name for p in routed}

    def factory(*args: Any, **kwargs: Any) -> ZOOptimizer:
        bound = signature.bind(*args, **kwargs)
        options = dict(bound.arguments)
        params = options.pop("params")
        if route is not None:
            params = route(params, **{k: options.pop(k) for k in list(options) if k in route_names})
        return cls(params, **{**defaults, **options})

    factory.__signature__ = signature  # type: ignore[attr-defined]  # read by inspect.signature
    factory.__name__ = f"make_{cls.__name__}"
    factory.__doc__ = f"{cls.__name__} ({', '.join(f'{k}={v!r}' for k, v in defaults.items()) or 'defaults'})."
    return factory


def _adanaged_state_multiple(config: Config) -> float:
    """Declared state: the momentum / memory ``m`` plus the probe's anchor or the ``x_0`` copy (state dtype)."""
    rule = get_step_rule(config.get("step_rule", DEFAULT_STEP_RULE))
    x0 = 1.0 if ("dist" in rule.needs or "probe" in rule.needs) else 0.0
    if "dist" in rule.needs and config.get("x0_dtype") is not None:
        x0 = 0.5 if config["x0_dtype"] in (torch.float16, torch.bfloat16) else x0
    return 1.0 + x0


# ---------------------------------------------------------------------------------------------- entries
_BUILTIN = [
    OptimizerSpec(
        name="zo-sgd",
        category="sgd",
        factory=ZOSGD,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("momentum", 0.0) > 0 else 0.0,
        test_config={"lr": 0.02, "eps": 1e-3},
        description="MeZO / ZO-SGD (Malladi et al. 2023, Alg. 1)",
        reference=REFERENCES["zo-sgd"],
    ),
    OptimizerSpec(
        name="zo-sgd-mmt",
        category="sgd",
        factory=preset(ZOSGD, momentum=0.9),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("momentum", 0.9) > 0 else 0.0,
        test_config={"lr": 0.004, "eps": 1e-3, "momentum": 0.8},
        description="ZO-SGD with heavy-ball momentum (ZO-Bench ZO-SGD-MMT)",
        reference=REFERENCES["zo-sgd"],
    ),
    OptimizerSpec(
        name="zo-signsgd",
        category="sign",
        factory=ZOSignSGD,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 0.0,
        test_config={"lr": 0.01, "eps": 1e-3, "q": 4},
        description="ZO-signSGD, coordinate-wise sign of the estimate (Liu et al. ICLR 2019)",
        reference=REFERENCES["zo-signsgd"],
    ),
    OptimizerSpec(
        name="zo-sgd-sign",
        category="sign",
        factory=ZOSGDSign,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 0.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="ZO-SGD-Sign, sign of the scalar projected gradient times z (ZO-Bench)",
        reference=REFERENCES["zo-sgd-sign"],
    ),
    OptimizerSpec(
        name="zo-adam",
        category="adaptive",
        factory=ZOAdam,
        evals_per_step=_central_evals,
        state_multiple=lambda c: 3.0 if c.get("amsgrad", False) else 2.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="ZO-Adam: Adam on the ZO estimate (ZO-Bench)",
        reference=REFERENCES["zo-adam"],
    ),
    OptimizerSpec(
        name="zo-adamm",
        category="adaptive",
        factory=preset(ZOAdam, amsgrad=True),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 3.0 if c.get("amsgrad", True) else 2.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="ZO-AdaMM: AMSGrad on the ZO estimate (Chen et al. NeurIPS 2019)",
        reference=REFERENCES["zo-adam"],
    ),
    OptimizerSpec(
        name="jaguar-signsgd",
        category="jaguar",
        factory=JaguarSignSGD,
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5},
        description="JAGUAR SignSGD, one coordinate per step (Petrov et al. 2025, Alg. 1)",
        reference=REFERENCES["jaguar"],
    ),
    OptimizerSpec(
        name="jaguar-signsgd-block",
        category="jaguar",
        factory=preset(JaguarSignSGD, estimator="block"),
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5, "block_fraction": 0.5},
        description="JAGUAR SignSGD with the public code's block sampling (Rademacher-signed blocks)",
        reference=REFERENCES["jaguar"],
    ),
    OptimizerSpec(
        name="jaguar-muon",
        category="jaguar",
        factory=preset(JaguarMuon, route=muon_routing("sign")),
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5},
        description="JAGUAR Muon, one coordinate per step, cubic NS (Petrov et al. 2025, Alg. 2)",
        reference=REFERENCES["jaguar"],
    ),
    OptimizerSpec(
        name="jaguar-muon-block",
        category="jaguar",
        factory=preset(JaguarMuon, route=muon_routing("sign"), estimator="block"),
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 0.005, "eps": 1e-3, "beta": 0.5, "block_fraction": 0.5},
        description="JAGUAR Muon with block sampling (the public code's estimator shape)",
        reference=REFERENCES["jaguar"],
    ),
    OptimizerSpec(
        name="zo-muon",
        category="muon",
        factory=preset(ZOMuon, route=muon_routing("sgd")),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("momentum", 0.0) > 0 else 0.0,
        test_config={"lr": 0.01, "eps": 1e-3, "momentum": 0.5},
        description="ZO-Muon: Newton-Schulz of the Gaussian estimate (JAGUAR paper App. A.1, Alg. 3)",
        reference=REFERENCES["zo-muon"],
    ),
    OptimizerSpec(
        name="zo-muon-orthogonal",
        category="muon",
        factory=preset(MatrixEfficientZOMuon, route=muon_routing("sgd")),
        evals_per_step=lambda c: evaluations_needed(c.get("scheme", "central"), 1),
        state_multiple=lambda c: 0.0,
        test_config={"lr": 0.01, "eps": 1e-3},
        description="Matrix-efficient ZO-Muon with known polar factors (JAGUAR paper App. A.2, Alg. 4)",
        reference=REFERENCES["zo-muon-orthogonal"],
    ),
    OptimizerSpec(
        name="zo-lmo",
        category="lmo",
        factory=preset(ZOLMO, route=lmo_routing),
        evals_per_step=_central_evals,
        state_multiple=lambda c: 1.0 if c.get("beta", 0.9) > 0 else 0.0,
        test_config={"lr": 0.01, "eps": 1e-3, "beta": 0.5},
        description="ZO momentum + per-group LMO (spectral for matrices, sign otherwise by default)",
        reference=REFERENCES["zo-lmo"],
    ),
    OptimizerSpec(
        name="adanaged",
        category="parameter-free",
        factory=AdaNAGED,
        evals_per_step=lambda c: 2 * int(c.get("q", 1)),
        state_multiple=_adanaged_state_multiple,
        test_config={"lr": 1.0, "reps_rel": 1e-3, "eps": 1e-3},
        description="AdaNAGED (reconstruction): ZO momentum + block LMO + function-value step search "
        "(3-point parabola every K steps), step-tied smoothing (arXiv 2606.14970 components)",
        reference=REFERENCES["adanaged"],
    ),
    OptimizerSpec(
        name="adanaged-alias",
        category="parameter-free",
        factory=preset(AdaNAGED, step_rule="alias"),
        evals_per_step=lambda c: 2 * int(c.get("q", 1)),
        state_multiple=lambda c: 1.0,
        test_config={"lr": 1.0, "reps_rel": 1e-2, "eps": 1e-3},
        description="AdaNAGED with the ALIAS-type step-size rule (generalised to any norm)",
        reference=REFERENCES["adanaged-alias"],
    ),
    OptimizerSpec(
        name="zo-dog",
        category="parameter-free",
        factory=ZODoG,
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 1.0, "reps_rel": 1e-2, "eps": 1e-3},
        description="DoG step (Ivgi et al. 2023) on two-point Gaussian ZO estimates",
        reference=REFERENCES["zo-dog"],
    ),
    OptimizerSpec(
        name="zo-poem",
        category="parameter-free",
        factory=ZOPOEM,
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 1.0, "reps_rel": 1e-2, "eps": 1e-3},
        description="POEM-style: sphere estimates, DoG step, step-tied smoothing (Ren & Luo 2025; mu rule ours)",
        reference=REFERENCES["zo-poem"],
    ),
    OptimizerSpec(
        name="zo-alias-sign",
        category="parameter-free",
        factory=ZOALIASSign,
        evals_per_step=lambda c: 2,
        state_multiple=lambda c: 1.0,
        test_config={"lr": 1.0, "reps_rel": 1e-2, "eps": 1e-3, "momentum": 0.9},
        description="ALIAS parameter-free Sign-SGD (Medyakov et al. 2025) on Gaussian ZO estimates",
        reference=REFERENCES["zo-alias-sign"],
    ),
]

for _spec in _BUILTIN:
    register_optimizer(_spec)
