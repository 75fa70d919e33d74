"""Conformance suite: every optimizer of the registry, parametrised by name.

A method registered with :func:`zotheory.optim.registry.register_optimizer` in any module of
``zotheory.optim`` is picked up automatically (every module of the package is imported first) and must
pass the same checks: descent on a quadratic and on a nonconvex problem, a descent-direction sign test,
the declared number of closure calls and state size, dtype/device preservation without ``.grad``,
``state_dict`` round trips and bit-exact resumption, agreement with the dense reference implementation,
the lr = 0 drift bound, the non-finite / exception guards and the validation of hyper-parameters.
Problems come from :mod:`problems` (``MatrixQuadratic`` in its flat regime, ``NonconvexSine``), in
float64 unless a test is about dtypes.
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import problems
import zotheory.optim
from zotheory.estimators import NonFiniteLossError
from zotheory.optim import (
    ZOLMO,
    JaguarMuon,
    JaguarSignSGD,
    MatrixEfficientZOMuon,
    ZOAdam,
    ZOMuon,
    ZOSGDSign,
    ZOSignSGD,
    muon_param_groups,
)
from zotheory.optim.base import ZOOptimizer
from zotheory.optim.registry import OPTIMIZERS, OptimizerSpec, declared_state_bytes, make_optimizer, register_optimizer

IMPORT_ERRORS: dict[str, str] = {}
for _mod in pkgutil.iter_modules(zotheory.optim.__path__):
    try:
        importlib.import_module(f"zotheory.optim.{_mod.name}")
    except Exception as exc:  # noqa: BLE001 - reported by test_every_optimizer_module_imports
        IMPORT_ERRORS[_mod.name] = repr(exc)

NAMES = sorted(OPTIMIZERS)
U32 = 2.0**-24  # unit roundoff of float32


def test_every_optimizer_module_imports() -> None:
    assert not IMPORT_ERRORS, f"modules of zotheory.optim failed to import: {IMPORT_ERRORS}"


# ---------------------------------------------------------------------------------------------- helpers
def config(name: str, **overrides: Any) -> dict[str, Any]:
    return {**OPTIMIZERS[name].test_config, **overrides}


def make(name: str, params: Any, **overrides: Any) -> ZOOptimizer:
    return OPTIMIZERS[name].make(params, **config(name, **overrides))


def two_blocks(dtype: torch.dtype = torch.float64, seed: int = 0, requires_grad: bool = False) -> list[torch.Tensor]:
    """A 6x5 matrix and a 4-vector with N(0, 1) entries (the matrix goes to the Muon path)."""
    gen = torch.Generator().manual_seed(seed)
    out = [torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)]
    return [nn.Parameter(t.to(dtype), requires_grad=requires_grad) for t in out]


def sum_sq(params: Sequence[torch.Tensor]) -> Callable[[], torch.Tensor]:
    weights = [torch.linspace(0.5, 2.0, p.numel(), dtype=torch.float64).reshape(p.shape).to(p.device) for p in params]

    def closure() -> torch.Tensor:
        return sum(0.5 * (w.to(p.dtype) * p * p).sum() for w, p in zip(weights, params, strict=False))

    return closure


class Counter:
    """Wraps a closure; counts calls, injects NaN/inf or raises at chosen call indices."""

    def __init__(self, fn: Callable[[], torch.Tensor], bad: dict[int, Any] | None = None) -> None:
        self.fn, self.calls, self.bad = fn, 0, bad or {}

    def __call__(self) -> torch.Tensor:
        k = self.calls
        self.calls += 1
        action = self.bad.get(k)
        if isinstance(action, BaseException):
            raise action
        value = self.fn()
        return value * float("nan") if action == "nan" else (value * float("inf") if action == "inf" else value)


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def all_equal(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=False))


def state_tensors(opt: ZOOptimizer) -> list[torch.Tensor]:
    return [
        v.clone()
        for st in opt.state.values()
        if isinstance(st, dict)
        for v in st.values()
        if isinstance(v, torch.Tensor)
    ]


# ---------------------------------------------------------------------------------------------- progress
def _run(problem: problems.Problem, name: str, steps: int) -> tuple[float, float]:
    opt = make(name, list(problem.named_parameters()))
    f0 = problem.suboptimality()
    for _ in range(steps):
        opt.step(problem)
    return f0, problem.suboptimality()


@pytest.mark.parametrize("name", NAMES)
def test_decreases_a_quadratic(name: str) -> None:
    """300 steps halve ``f - f*`` on a 6x5 matrix quadratic with a bias block (flat regime, kappa = 2)."""
    problem = problems.MatrixQuadratic(6, 5, regime="flat", init_radius=3.0, seed=3, dtype=torch.float64)
    f0, f_end = _run(problem, name, 300)
    assert f_end <= 0.5 * f0, f"{name}: f - f* went from {f0:.4g} to {f_end:.4g}"


@pytest.mark.parametrize("name", NAMES)
def test_decreases_a_nonconvex_function(name: str) -> None:
    """300 steps halve ``f - f*`` on NonconvexSine (d = 20, a = 2: curvature down to -1)."""
    problem = problems.NonconvexSine(20, a=2.0, init_radius=1.5, seed=4, dtype=torch.float64)
    f0, f_end = _run(problem, name, 300)
    assert f_end <= 0.5 * f0, f"{name}: f - f* went from {f0:.4g} to {f_end:.4g}"


@pytest.mark.parametrize("name", NAMES)
def test_update_is_a_descent_direction(name: str) -> None:
    """One step on a linear ``f(x) = <a, x>`` from 200 seeds: the mean change of ``f`` is negative.

    Every method's expected step direction has a positive inner product with ``-a``; a flipped sign
    (the J-code-v2 ``grad_approx`` bug, ``docs/theory.md`` §6.4) makes the mean change positive with
    the same magnitude. One-sided z-test: if ``E[Delta f] >= 0`` (a flipped or absent descent), the
    test passes with probability <= 1e-6 (z = 4.75 standard errors).
    """
    gen = torch.Generator().manual_seed(11)
    a = [torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)]
    x0 = two_blocks()
    lr = config(name)["lr"] * 1e-2
    changes = []
    for seed in range(200):
        params = snapshot(x0)

        def f(params: list[torch.Tensor] = params) -> torch.Tensor:
            return sum((ai * p).sum() for ai, p in zip(a, params, strict=False))

        before = float(f())
        make(name, params, lr=lr, seed=seed).step(f)
        changes.append((float(f()) - before) / lr)
    mean, se = float(np.mean(changes)), float(np.std(changes, ddof=1) / math.sqrt(len(changes)))
    assert mean + 4.75 * se < 0, f"{name}: mean change of f per unit lr {mean:.4g} (standard error {se:.3g})"


# ---------------------------------------------------------------------------------------------- protocol
@pytest.mark.parametrize("name", NAMES)
def test_closure_calls_match_declaration(name: str) -> None:
    params = two_blocks()
    spec = OPTIMIZERS[name]
    opt = make(name, params)
    assert opt.evals_per_step == spec.evals_per_step(config(name))
    closure = Counter(sum_sq(params))

    def probes() -> int:  # AdaNAGED's function-value probes come on top of evals_per_step
        return opt.probe_evaluations() if hasattr(opt, "probe_evaluations") else 0

    for k in range(1, 4):
        opt.step(closure)
        assert closure.calls == k * opt.evals_per_step + probes()
    assert opt.state["zo"]["evals"] == 3 * opt.evals_per_step + probes()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_declared_state_size(name: str, dtype: torch.dtype) -> None:
    """``state_bytes()`` after 3 steps equals the registry's declaration (fp32 state for fp16 params)."""
    params = two_blocks(dtype)
    cfg = config(name, eps=0.05) if dtype == torch.float16 else config(name)
    opt = OPTIMIZERS[name].make(params, **cfg)
    for _ in range(3):
        opt.step(sum_sq(params))
    assert opt.state_bytes() == declared_state_bytes(OPTIMIZERS[name], params, cfg)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_device_preserved_and_no_grad(name: str, dtype: torch.dtype, device: str) -> None:
    params = [p.to(device).detach().requires_grad_(True) for p in two_blocks(dtype)]
    params = [nn.Parameter(p.detach()) for p in params]
    half = dtype in (torch.float16, torch.bfloat16)
    opt = make(name, params, eps=0.05 if half else 1e-3)
    before = snapshot(params)
    for _ in range(3):
        opt.step(sum_sq(params))
    for p in params:
        assert p.dtype == dtype and p.device.type == device
        assert p.grad is None
        assert torch.isfinite(p).all()
    assert not all_equal(params, before), f"{name} did not move in {dtype}"
    for t in state_tensors(opt):
        assert t.device.type == device
        assert t.dtype == (torch.float32 if half else dtype), f"{name} keeps {t.dtype} state for {dtype} params"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    params = two_blocks()
    opt = make(name, params)
    for _ in range(5):
        opt.step(sum_sq(params))
    sd = opt.state_dict()
    other = make(name, snapshot(params), seed=123)
    other.load_state_dict(copy.deepcopy(sd))
    sd2 = other.state_dict()
    assert sd2["param_groups"] == sd["param_groups"]
    assert sd2["state"].keys() == sd["state"].keys()
    for key, st in sd["state"].items():
        for k, v in st.items():
            w = sd2["state"][key][k]
            assert torch.equal(v, w) and v.dtype == w.dtype if isinstance(v, torch.Tensor) else v == w


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_checkpoint_resume_is_bit_exact(name: str, dtype: torch.dtype) -> None:
    """Checkpoint at step 6 (torch.save to bytes), resume in a fresh optimizer built with another seed:
    steps 7..12 equal the uninterrupted run bit for bit."""
    eps = 0.05 if dtype == torch.float16 else 1e-3
    full = two_blocks(dtype)
    opt = make(name, full, eps=eps)
    for _ in range(12):
        opt.step(sum_sq(full))

    part = two_blocks(dtype)
    opt = make(name, part, eps=eps)
    for _ in range(6):
        opt.step(sum_sq(part))
    buffer = io.BytesIO()
    torch.save({"params": snapshot(part), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    resumed = [nn.Parameter(t, requires_grad=False) for t in ckpt["params"]]
    opt2 = make(name, resumed, eps=eps, seed=999)
    opt2.load_state_dict(ckpt["optimizer"])
    for _ in range(6):
        opt2.step(sum_sq(resumed))
    assert all_equal(resumed, full)


@pytest.mark.parametrize("name", NAMES)
def test_fast_path_matches_dense_reference(name: str) -> None:
    """100 float64 steps of the in-place optimizer and of its literal dense reference
    (:mod:`zotheory.optim.reference`) agree to ``max |x - x_ref| <= 1e-9``.

    Both use the same seeds; they differ only by the rounding of the folded restore and of in-place
    arithmetic (observed <= 4e-13 after 100 steps). A formula error (a missing bias correction, a wrong
    momentum convention, an update along another direction) shows up at the 1e-3 level."""
    spec = OPTIMIZERS[name]
    assert spec.reference is not None, f"{name} registers no dense reference"
    gen = torch.Generator().manual_seed(5)
    weights = [
        torch.rand(6, 5, generator=gen, dtype=torch.float64) + 0.5,
        torch.rand(4, generator=gen, dtype=torch.float64),
    ]

    def objective(ps: Sequence[torch.Tensor]) -> torch.Tensor:
        return 0.5 * (weights[0] * ps[0] ** 2).sum() + (weights[1] * ps[1] ** 4).sum() / 4 + ps[1].sum()

    fast, slow = two_blocks(), two_blocks()
    opt = make(name, fast)
    ref = spec.reference(opt, slow)
    worst = 0.0
    for _ in range(100):
        opt.step(lambda: objective(fast))
        ref.step(lambda: objective(slow))
        worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(fast, slow, strict=False)))
    assert worst <= 1e-9, f"{name}: fast and reference differ by {worst:.3g}"


# ---------------------------------------------------------------------------------------------- numerics
def _drift_bound(opt: ZOOptimizer, params: Sequence[torch.Tensor], bound: list[torch.Tensor]) -> None:
    """Add one step's rounding bound to ``bound``, per entry.

    Per direction the arithmetic restore computes ``y1 = x + r z``, ``y2 = y1 - 2 r z``, ``y3 = y2 + r z``
    in float32. Each addition rounds once (error <= u |y_k|) and each product ``a z`` at most once more
    (<= u |a z|; fused multiply-add only removes roundings), so with ``|y1|, |y2| <= |x| + r|z|``:
    ``|y3 - x| <= u (3|x| + 2 r|z|) + u (r + 2r + r)|z| = u (3|x| + 6 r|z|)``, ``u = 2^-24``; a zero
    step-size update adds exact zeros. We allow 1% on top for the float32 rounding of ``r`` itself.
    """
    r = opt.radius()
    seed = opt.step_seed()
    for j in range(opt.q):
        zs = opt.directions.materialize([p.detach() for p in params], seed, j)
        for b, p, z in zip(bound, params, zs, strict=False):
            b.add_(1.01 * U32 * (3 * p.detach().double().abs() + 6 * r * z.double().abs()))


@pytest.mark.parametrize("name", NAMES)
def test_zero_lr_drift_is_within_the_rounding_bound(name: str) -> None:
    """Lr = 0 for 1,000 float32 steps: ``|x_T - x_0| <= sum_t u (3|x| + 6 r |z_t|)`` entrywise (derivation in
    :func:`_drift_bound`), and ``x_T == x_0`` bit for bit with ``exact_restore=True``. The half-precision
    drift is reported by ``benchmarks/optimizer_overhead.py``, not asserted."""
    params = two_blocks(torch.float32)
    x0 = snapshot(params)
    opt = make(name, params, lr=0.0)
    bound = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    closure = sum_sq(params)
    for _ in range(1000):
        _drift_bound(opt, params, bound)
        opt.step(closure)
    for p, x, b in zip(params, x0, bound, strict=False):
        drift = (p.detach().double() - x.double()).abs()
        assert bool((drift <= b).all()), (
            f"{name}: drift {float(drift.max()):.3g} exceeds the bound {float(b.max()):.3g}"
        )

    params = two_blocks(torch.float32)
    opt = make(name, params, lr=0.0, exact_restore=True)
    closure = sum_sq(params)
    for _ in range(1000):
        opt.step(closure)
    assert all_equal(params, x0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nonfinite_losses_never_change_parameters(name: str, kind: str) -> None:
    """NaN/inf at random evaluations (probability 0.1 each, seeded): a step that saw one leaves the
    parameters and the optimizer state bit-exactly unchanged (``exact_restore=True``) and is counted
    in ``skipped``; clean steps move."""
    params = two_blocks()
    opt = make(name, params, on_nonfinite="skip", exact_restore=True)
    e = opt.evals_per_step
    rng = np.random.default_rng(7)
    bad = {int(k): kind for k in np.nonzero(rng.random(40 * e) < 0.1)[0]}
    closure = Counter(sum_sq(params), bad)
    expected_skips = 0
    for s in range(40):
        before, state_before = snapshot(params), state_tensors(opt)
        first_call = closure.calls  # the estimate's e calls come first (AdaNAGED's probes follow them)
        loss = opt.step(closure)
        hit = any(k in bad for k in range(first_call, first_call + e))
        expected_skips += hit
        if hit:
            assert math.isnan(float(loss))
            assert all_equal(params, before), f"{name}: step {s} with a {kind} loss changed the parameters"
            assert all_equal(state_tensors(opt), state_before)
        else:
            assert not all_equal(params, before)
    assert opt.state["zo"]["skipped"] == expected_skips > 0


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_loss_raises_and_restores(name: str) -> None:
    params = two_blocks()
    opt = make(name, params, exact_restore=True)
    before = snapshot(params)
    closure = Counter(sum_sq(params), {opt.evals_per_step - 1: "nan"})
    with pytest.raises(NonFiniteLossError):
        opt.step(closure)
    assert all_equal(params, before)
    assert opt.state["zo"]["step"] == 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("exact", [True, False])
def test_raising_closure_leaves_parameters_restored(name: str, exact: bool) -> None:
    """A closure raising at its k-th call (every k of a step) propagates the exception with the parameters
    restored: bit-exactly with ``exact_restore=True``, within the float64 rounding otherwise."""
    params = two_blocks()
    opt = make(name, params, exact_restore=exact)
    for k in range(opt.evals_per_step):
        before = snapshot(params)
        with pytest.raises(RuntimeError, match="boom"):
            opt.step(Counter(sum_sq(params), {k: RuntimeError("boom")}))
        if exact:
            assert all_equal(params, before)
        else:
            for p, b in zip(params, before, strict=False):
                assert torch.allclose(p, b, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------- validation
def _beta_keys(opt: ZOOptimizer) -> list[str]:
    return [k for k in ("momentum", "beta", "betas") if k in opt.defaults]


@pytest.mark.parametrize("name", NAMES)
def test_bad_hyperparameters_raise_value_error(name: str) -> None:
    params = two_blocks()
    with pytest.raises(ValueError, match="-0.5"):
        make(name, params, lr=-0.5)
    with pytest.raises(ValueError, match="lrr"):
        make(name, [{"params": params[:1], "lrr": 0.1}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="-2.0"):
        make(name, [{"params": params[:1], "lr": -2.0}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="nan"):
        make(name, params, eps=float("nan"))
    for key in _beta_keys(make(name, params)):
        for bad in (1.0, -0.1, 1.5):
            value = (0.9, bad) if key == "betas" else bad
            with pytest.raises(ValueError, match=str(bad)):
                make(name, params, **{key: value})


def test_unknown_norm_and_update_rule_are_named() -> None:
    params = two_blocks()
    with pytest.raises(ValueError, match="'spectrall'"):
        ZOLMO(params, norm="spectrall")
    with pytest.raises(ValueError, match="'nuclear'.*shape \\(4,\\)"):
        ZOLMO(params, norm="nuclear")
    with pytest.raises(ValueError, match="'orthogonal'"):
        ZOMuon(muon_param_groups(params, other="orthogonal"))
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        JaguarMuon(params)  # the vector is in the default 'muon' group
    with pytest.raises(ValueError, match="'muon'"):
        JaguarMuon([{"params": params[:1], "update": "sgd"}, {"params": params[1:], "update": "sign"}])
    with pytest.raises(ValueError, match="'row'"):
        JaguarSignSGD(params, estimator="row")
    with pytest.raises(ValueError, match="1.5"):
        JaguarSignSGD(params, estimator="block", block_fraction=1.5)
    with pytest.raises(ValueError, match="'one_point'"):
        MatrixEfficientZOMuon(muon_param_groups(params), scheme="one_point")
    with pytest.raises(ValueError, match="ns_steps"):
        ZOMuon(muon_param_groups(params), ns_steps=-1)
    with pytest.raises(ValueError, match="adam_eps"):
        ZOAdam(params, adam_eps=0.0)


def test_registry_names_unknown_and_duplicate_entries() -> None:
    with pytest.raises(ValueError, match="'zo-sgdd'"):
        make_optimizer("zo-sgdd", two_blocks())
    spec = OPTIMIZERS["zo-sgd"]
    with pytest.raises(ValueError, match="already registered"):
        register_optimizer(spec)
    extra = OptimizerSpec("test-extra", spec.factory, spec.evals_per_step, spec.state_multiple, {"lr": 0.1})
    try:
        register_optimizer(extra)
        assert isinstance(make_optimizer("test-extra", two_blocks()), ZOOptimizer)
    finally:
        from zotheory.optim.registry import _REGISTRY

        _REGISTRY.pop("test-extra", None)
    with pytest.raises(TypeError):
        OPTIMIZERS["x"] = spec  # type: ignore[index]


# ---------------------------------------------------------------------------------------------- method-specific
def test_sign_methods_are_different_methods() -> None:
    """Gaussian z: ZO-signSGD moves every coordinate by exactly lr, ZO-SGD-Sign by lr |z_i|; with
    Rademacher z and q = 1 they coincide (``sign(c z) = sign(c) z``)."""
    x0 = two_blocks()
    a, b = snapshot(x0), snapshot(x0)
    ZOSignSGD(a, lr=0.1).step(sum_sq(a))
    ZOSGDSign(b, lr=0.1).step(sum_sq(b))
    moved_a = torch.cat([(p - x).abs().reshape(-1) for p, x in zip(a, x0, strict=False)])
    moved_b = torch.cat([(p - x).abs().reshape(-1) for p, x in zip(b, x0, strict=False)])
    assert torch.allclose(moved_a, torch.full_like(moved_a, 0.1), rtol=1e-12)
    assert not torch.allclose(moved_b, moved_a)
    a, b = snapshot(x0), snapshot(x0)
    ZOSignSGD(a, lr=0.1, directions="rademacher").step(sum_sq(a))
    ZOSGDSign(b, lr=0.1, directions="rademacher").step(sum_sq(b))
    assert all(torch.allclose(p, q, rtol=0, atol=1e-15) for p, q in zip(a, b, strict=False))


def test_jaguar_coordinate_memory_touches_one_entry() -> None:
    params = two_blocks()
    opt = JaguarSignSGD(params, lr=0.0, beta=0.25)
    opt.step(sum_sq(params))
    memory = torch.cat([m.reshape(-1) for m in opt.memories()])
    assert int((memory != 0).sum()) == 1
    grads = torch.cat(
        [
            (w * p).reshape(-1)
            for w, p in zip(
                [torch.linspace(0.5, 2.0, p.numel(), dtype=torch.float64).reshape(p.shape) for p in params],
                params,
                strict=False,
            )
        ]
    )
    i = int(torch.nonzero(memory)[0])
    assert math.isclose(float(memory[i]), 0.75 * float(grads[i]), rel_tol=1e-9)


def test_jaguar_block_estimates_and_block_sum() -> None:
    """Block estimator, ``beta = 0``: the memory is ``s_i delta`` on the blocks of every tensor (one
    ``delta`` for all) and 0 elsewhere; with all-ones signs every entry of the blocks gets the same block
    sum (the public code's estimator)."""
    x0 = two_blocks()
    for signs in ("rademacher", "ones"):
        params = snapshot(x0)
        opt = JaguarSignSGD(params, lr=0.0, beta=0.0, estimator="block", block_fraction=0.5, block_signs=signs)
        seed = opt.step_seed()
        opt.step(sum_sq(params))
        zs = opt.directions.materialize(params, seed, 0)
        supports = [z != 0 for z in zs]
        memory = opt.memories()
        assert all(torch.equal(m != 0, s) for m, s in zip(memory, supports, strict=False))
        assert [int(s.sum()) for s in supports] == [3 * 3, 2]  # ceil(0.5 * 6) x ceil(0.5 * 5); ceil(0.5 * 4)
        values = torch.cat([(m[s] / z[s]).reshape(-1) for m, z, s in zip(memory, zs, supports, strict=False)])
        assert torch.allclose(values, values[0].expand_as(values), rtol=1e-12)
        if signs == "ones":
            assert all(bool((z[s] == 1).all()) for z, s in zip(zs, supports, strict=False))


def test_jaguar_replacement_memory_error_matches_oracle_27() -> None:
    """Static x (lr = 0), exact central differences, ``beta = 0``: ``E||m_k - g||^2 = (1 - 1/d)^k ||g||^2``
    (§5.27, ``zotheory.theory.jaguar_second_moment_error_factor``). 300 runs of k = 12 steps at
    d = 12; two-sided z-test with false-alarm probability 1e-3."""
    from zotheory.theory import jaguar_second_moment_error_factor

    gen = torch.Generator().manual_seed(2)
    x = [torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)]
    g = torch.cat([(2.0 * t).reshape(-1) for t in x])  # f = sum x^2

    def f(ps: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum((p * p).sum() for p in ps)

    errors = []
    for seed in range(300):
        ps = snapshot(x)
        opt = JaguarSignSGD(ps, lr=0.0, beta=0.0, seed=seed)
        for _ in range(12):
            opt.step(lambda ps=ps: f(ps))
        m = torch.cat([t.reshape(-1) for t in opt.memories()])
        errors.append(float(((m - g) ** 2).sum()))
    predicted = jaguar_second_moment_error_factor(0.0, 12, 12) * float((g**2).sum())
    se = float(np.std(errors, ddof=1)) / math.sqrt(len(errors))
    assert abs(float(np.mean(errors)) - predicted) <= 3.29 * se, (np.mean(errors), predicted, se)


def test_muon_param_groups_routing_rule() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = nn.Embedding(11, 4)
            self.fc = nn.Linear(4, 4)
            self.conv = nn.Conv1d(4, 3, 2)
            self.layer_norm = nn.LayerNorm(4)
            self.lm_head = nn.Linear(4, 11, bias=False)
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)

    groups = muon_param_groups(Tiny())
    names = [[n for n, _ in g["params"]] for g in groups]
    assert groups[0]["update"] == "muon" and names[0] == ["fc.weight", "conv.weight"]
    assert groups[1]["update"] == "sign"
    assert set(names[1]) == {
        "embed_tokens.weight",
        "fc.bias",
        "conv.bias",
        "layer_norm.weight",
        "layer_norm.bias",
        "lm_head.weight",
    }
    big = muon_param_groups(Tiny(), max_rows=3)
    assert [n for n, _ in big[0]["params"]] == ["conv.weight"]
    opt = JaguarMuon(muon_param_groups(Tiny()), lr=1e-3)
    assert opt.param_groups[0]["param_names"] == ["fc.weight", "conv.weight"]
    zolmo = ZOLMO(muon_param_groups(Tiny(), key="norm", hidden="spectral", other="linf"))
    assert [g["norm"] for g in zolmo.param_groups] == ["spectral", "linf"]


def test_zolmo_rms_radii_move_every_tensor_by_lr_and_follow_the_reference() -> None:
    """``radii="rms"``: with ``beta = 0`` one step moves the entries of an exact-spectral and an l2 tensor by ``lr``
    in RMS (unit radii: ``lr / sqrt(rows)`` and ``lr / sqrt(n)``); 20 momentum steps match the dense reference."""
    from zotheory.optim.reference import REFERENCES

    params, slow = two_blocks(), two_blocks()
    groups = muon_param_groups(params, key="norm", hidden="spectral", other="l2")
    before = [p.detach().clone() for p in params]
    opt = ZOLMO(groups, lr=0.1, beta=0.0, radii="rms")
    opt.step(sum_sq(params))
    for p, q in zip(params, before, strict=True):
        assert float((p.detach() - q).pow(2).mean().sqrt()) == pytest.approx(0.1, rel=1e-9)
    fast = two_blocks()
    opt = ZOLMO(muon_param_groups(fast, key="norm", hidden="spectral", other="l2"), lr=0.05, beta=0.5, radii="rms")
    ref = REFERENCES["zo-lmo"](opt, slow)
    for _ in range(20):
        opt.step(sum_sq(fast))
        ref.step(sum_sq(slow))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(fast, slow, strict=True))
    with pytest.raises(ValueError, match="radii must be one of \\['unit', 'rms'\\], got 'none'"):
        ZOLMO(two_blocks(), radii="none")


def test_zolmo_schedules() -> None:
    """A callable schedule scales ``lr`` by ``factor(t)`` (checked against the dense reference); a torch
    ``lr_scheduler`` drives the ``lr`` key; a negative factor is refused with the parameters restored."""
    from zotheory.optim.reference import REFERENCES

    fast, slow = two_blocks(), two_blocks()
    opt = ZOLMO(
        muon_param_groups(fast, key="norm", hidden="spectral", other="l2"),
        lr=0.1,
        lr_schedule=lambda t: 2.0 / (t + 2),
        beta=0.5,
    )
    ref = REFERENCES["zo-lmo"](opt, slow)
    for _ in range(20):
        opt.step(sum_sq(fast))
        ref.step(sum_sq(slow))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(fast, slow, strict=False))

    params = two_blocks()
    opt = ZOLMO(params, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(4):
        opt.step(sum_sq(params))
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)

    params = two_blocks()
    before = snapshot(params)
    opt = ZOLMO(params, lr=0.1, lr_schedule=lambda t: -1.0, exact_restore=True)
    with pytest.raises(ValueError, match="-1.0"):
        opt.step(sum_sq(params))
    assert all_equal(params, before)


def test_half_precision_moments_stay_fp32_through_a_checkpoint() -> None:
    """ZO-Adam on float16 parameters keeps float32 moments, also after ``load_state_dict`` (torch would
    cast them to float16; the base class keeps the dtype)."""
    params = two_blocks(torch.float16)
    opt = ZOAdam(params, lr=1e-3, eps=0.05)
    opt.step(sum_sq(params))
    other = ZOAdam(snapshot(params), lr=1e-3, eps=0.05)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert {t.dtype for t in state_tensors(other)} == {torch.float32}


def test_matrix_efficient_update_is_the_polar_factor() -> None:
    """One step of Alg. 4 moves each matrix by ``-lr sign(c) U V^T``: a partial isometry (all singular
    values of the step equal lr), whose inner product with the perturbation has the sign of ``-c``."""
    params = [t.detach().clone() for t in two_blocks()]
    x0 = snapshot(params)
    opt = MatrixEfficientZOMuon(muon_param_groups(params), lr=0.01)
    opt.step(sum_sq(params))
    step = params[0] - x0[0]
    assert torch.allclose(torch.linalg.svdvals(step), torch.full((5,), 0.01, dtype=torch.float64), rtol=1e-10)


def test_exact_restore_does_not_change_the_trajectory_in_float64() -> None:
    """``exact_restore`` changes how x is put back, not the method: float64 trajectories agree to 1e-12.

    The folded restore ``x + eps z - eps z`` leaves about one ulp (1e-16) per step. Two AdaNAGED rules amplify it:
    the ALIAS-type rule (its smoothness estimate divides by ``||x_{t+1} - x_t||``; measured 3.6e-12 after 20
    steps) and the default search rule (its probe's step factor is a ratio of second differences of three loss
    values; measured 1.2e-11 after 20 steps, with every probe taking the same branch). These two get 1e-9, still
    five orders of magnitude below the distance moved.
    """
    amplifying = {"adanaged-alias": 1e-9, "adanaged": 1e-9}
    for name in NAMES:
        a, b = two_blocks(), two_blocks()
        start = snapshot(a)
        oa, ob = make(name, a), make(name, b, exact_restore=True)
        for _ in range(20):
            oa.step(sum_sq(a))
            ob.step(sum_sq(b))
        moved = max((x - x0).abs().max().item() for x, x0 in zip(a, start, strict=False))
        assert moved > 1e-4, (name, moved)
        atol = amplifying.get(name, 1e-12)
        assert all(torch.allclose(x, y, rtol=0, atol=atol) for x, y in zip(a, b, strict=False)), name


def test_zosgd_weight_decay_follows_the_reference_and_skips_biases() -> None:
    """ZO-SGD with momentum and weight decay on named parameters agrees with the dense reference,
    which decays ``weight`` and leaves ``bias`` alone (MeZO's rule)."""
    fast, slow = two_blocks(), two_blocks()
    opt = make("zo-sgd-mmt", [("layer.weight", fast[0]), ("layer.bias", fast[1])], weight_decay=0.1)
    ref = OPTIMIZERS["zo-sgd-mmt"].reference(opt, slow)
    for _ in range(30):
        opt.step(sum_sq(fast))
        ref.step(sum_sq(slow))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(fast, slow, strict=False))
    assert opt.weight_decay_factors() == [0.1, 0.0]


def test_newton_schulz_stacks_and_dtypes() -> None:
    """Equal-shape matrices share one batched Newton–Schulz chain: ZO-Muon's step on three 6x5 matrices equals
    the per-matrix ``newton_schulz`` of each dense estimate (float64), ``ns_dtype="bf16"`` (the GPU default, run
    here on the CPU) gives the bf16 per-matrix result, and a bad ``ns_dtype`` is named."""
    import types

    from zotheory.lmo import MUON_QUINTIC, newton_schulz
    from zotheory.optim.muon import ZOMuon, ns_compute_dtype

    for ns_dtype, compute, atol in (("auto", None, 1e-12), ("bf16", torch.bfloat16, 1e-3)):
        params = [
            nn.Parameter(torch.randn(6, 5, generator=torch.Generator().manual_seed(k), dtype=torch.float64))
            for k in range(3)
        ]
        before = snapshot(params)
        opt = ZOMuon(params, lr=0.1, ns_dtype=ns_dtype, seed=3)
        closure = sum_sq(params)
        est_seed = opt.step_seed()
        opt.step(closure)
        # replay the estimate from the seed, then the per-matrix Newton–Schulz
        probe = [b.clone() for b in before]
        est = ZOMuon(probe, lr=0.1, seed=3).estimate(sum_sq(probe), leave_pending=False)
        assert est.step_seed == est_seed
        for p, b, g in zip(params, before, est.materialize(probe), strict=False):
            expected = b - 0.1 * newton_schulz(g, MUON_QUINTIC, 5, compute_dtype=compute)
            assert torch.allclose(p.detach(), expected, rtol=0, atol=atol), ns_dtype
    cuda_like = types.SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16)
    assert ns_compute_dtype("auto", cuda_like) == torch.bfloat16
    assert ns_compute_dtype("auto", torch.zeros(2, dtype=torch.float64)) == torch.float64
    with pytest.raises(ValueError, match="'fp8'"):
        ZOMuon(two_blocks()[:1], ns_dtype="fp8")
