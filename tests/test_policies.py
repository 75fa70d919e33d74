"""Direction policies: LDSD (learned mean) and the prior-informed guiding vector / greedy / carried best.

Statistical tests use fixed seeds; each states its false-alarm probability and derives its
tolerance from the empirical standard error (two-sided z-test).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from zotheory.directions import Gaussian, mix_seed
from zotheory.estimators import NonFiniteLossError
from zotheory.optim import ZOSGD
from zotheory.optim.registry import OPTIMIZERS
from zotheory.policies import (
    CarriedBestPolicy,
    GreedyPolicy,
    GuidedVectorPolicy,
    LDSDPolicy,
    PinnedCombinations,
    guided_weights,
    rloo_coefficients,
)
from zotheory.theory import guided_vector_alignment_gain

Z_CRIT_1E3 = 3.2905  # two-sided normal critical value for a false-alarm probability of 1e-3


class Quad(torch.nn.Module):
    """``f(x) = 1/2 sum_i a_i (x_i - 1)^2`` over two blocks (a vector and a matrix)."""

    def __init__(self, dtype=torch.float64, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.v = torch.nn.Parameter(torch.randn(7, generator=gen, dtype=dtype))
        self.w = torch.nn.Parameter(torch.randn(3, 4, generator=gen, dtype=dtype))
        self.register_buffer("av", torch.linspace(0.2, 1.0, 7, dtype=dtype))
        self.register_buffer("aw", torch.linspace(0.1, 0.9, 12, dtype=dtype).reshape(3, 4))

    def forward(self):
        return 0.5 * ((self.av * (self.v - 1) ** 2).sum() + (self.aw * (self.w - 1) ** 2).sum())

    def grad(self):
        with torch.no_grad():
            return [self.av * (self.v - 1), self.aw * (self.w - 1)]


class Linear(torch.nn.Module):
    """``f(x) = <g, x>`` for a fixed ``g``: the linear regime of ``docs/theory.md`` §2.4."""

    def __init__(self, d=20, seed=0, dtype=torch.float64):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.nn.Parameter(torch.randn(d, generator=gen, dtype=dtype))
        self.register_buffer("g", torch.randn(d, generator=gen, dtype=dtype))

    def forward(self):
        return (self.g * self.x).sum()


def all_policies():
    return [
        LDSDPolicy(k=3, sigma=1.0, lr_mu=0.1, init="random_unit", seed=3),
        GuidedVectorPolicy(M=4, alpha=0.5),
        GuidedVectorPolicy(M=4, alpha=0.5, normalize="unit_variance"),
        GreedyPolicy(M=3),
        CarriedBestPolicy(),
    ]


def counting(closure):
    calls = {"n": 0}

    def wrapped():
        calls["n"] += 1
        return closure()

    return wrapped, calls


# ---------------------------------------------------------------------------------- counts
@pytest.mark.parametrize(
    "policy, expected",
    [
        (LDSDPolicy(k=1), 3),
        (LDSDPolicy(k=4), 6),
        (GuidedVectorPolicy(M=2), 4),
        (GuidedVectorPolicy(M=8, alpha=0.25), 10),
        (GreedyPolicy(M=5), 7),
        (CarriedBestPolicy(), 4),
    ],
    ids=repr,
)
def test_evaluation_counts(policy, expected):
    prob = Quad()
    opt = ZOSGD(prob.parameters(), lr=1e-2, eps=1e-3, policy=policy)
    assert opt.evals_per_step == expected
    closure, calls = counting(prob)
    for t in range(3):  # the carried-best policy's first step is counted like the others
        opt.step(closure)
        assert calls["n"] == expected * (t + 1)
    assert opt.state["zo"]["evals"] == 3 * expected


def test_forward_scheme_counts():
    prob = Quad()
    opt = ZOSGD(prob.parameters(), lr=1e-2, eps=1e-3, scheme="forward", policy=GreedyPolicy(M=3))
    closure, calls = counting(prob)
    opt.step(closure)
    assert opt.evals_per_step == 5 == calls["n"]


def test_policies_need_q_one():
    prob = Quad()
    with pytest.raises(ValueError, match="q=2"):
        ZOSGD(prob.parameters(), q=2, policy=GreedyPolicy(M=3)).step(prob)


# ---------------------------------------------------------------------------------- LDSD mechanics
def _recording(prob):
    points = []

    def closure():
        points.append([p.detach().clone() for p in prob.parameters()])
        return prob()

    return closure, points


def test_ldsd_mu_update_replays_the_evaluated_candidates():
    """The mu update equals the dense REINFORCE/leave-one-out formula computed from the
    candidate points at which the closure was actually called (docs/theory.md §1.2, 1.5)."""
    prob = Quad()
    k, sigma, lr_mu, r = 5, 0.7, 0.3, 1e-2
    policy = LDSDPolicy(k=k, sigma=sigma, lr_mu=lr_mu, init="random_unit", seed=1)
    opt = ZOSGD(prob.parameters(), lr=1e-2, eps=r, policy=policy)
    closure, points = _recording(prob)
    for _ in range(3):
        mu_old = policy.mean()
        x_old = [p.detach().clone() for p in prob.parameters()]
        points.clear()
        opt.step(closure)
        assert len(points) == k + 2
        z = [[(pt - x0) / r for pt, x0 in zip(points[i], x_old, strict=False)] for i in range(k)]
        losses = torch.tensor([float(v) for v in policy.last["candidate_losses"]], dtype=torch.float64)
        c = (k * losses - losses.sum()) / (k - 1)
        expected = [
            m - lr_mu / (k * sigma**2) * sum(c[i] * (z[i][b] - m) for i in range(k)) for b, m in enumerate(mu_old)
        ]
        got = policy.mean()
        for e, g, m in zip(expected, got, mu_old, strict=False):
            assert torch.allclose(g, e, rtol=0, atol=1e-9), float((g - e).abs().max())
            assert not torch.equal(g, m)  # the update did something
        # the central pair sits at x +- r z_{i*}
        best = policy.last["chosen"]
        assert best == int(torch.argmin(losses))
        for b in range(2):
            assert torch.allclose(points[k][b], x_old[b] + r * z[best][b], atol=1e-12)
            assert torch.allclose(points[k + 1][b], x_old[b] - r * z[best][b], atol=1e-12)


def test_ldsd_candidates_are_the_gaussian_family_at_mu_zero():
    prob = Quad()
    policy = LDSDPolicy(k=4, sigma=1.0, lr_mu=0.0)
    opt = ZOSGD(prob.parameters(), lr=0.0, eps=1e-3, policy=policy)
    closure, points = _recording(prob)
    x0 = [p.detach().clone() for p in prob.parameters()]
    opt.step(closure)
    step_seed = mix_seed(0, 0)  # the optimizer's default seed 0, step 0
    for j in range(4):
        z = Gaussian().materialize(x0, step_seed, j)
        for b in range(2):
            assert torch.allclose((points[j][b] - x0[b]) / 1e-3, z[b], atol=1e-9)


def test_ldsd_k1_is_zosgd_and_never_updates_mu():
    prob_a, prob_b = Quad(dtype=torch.float32), Quad(dtype=torch.float32)
    policy = LDSDPolicy(k=1, sigma=1.0, lr_mu=0.5)
    opt_a = ZOSGD(prob_a.parameters(), lr=0.05, eps=1e-3, seed=7, policy=policy)
    opt_b = ZOSGD(prob_b.parameters(), lr=0.05, eps=1e-3, seed=7)
    for _ in range(20):
        opt_a.step(prob_a)
        opt_b.step(prob_b)
        assert torch.equal(rloo_coefficients(policy.last["candidate_losses"]), torch.zeros(1, dtype=torch.float64))
    for pa, pb in zip(prob_a.parameters(), prob_b.parameters(), strict=False):
        assert torch.equal(pa, pb)  # same directions, same coefficients: bit-identical trajectory
    assert all(torch.equal(m, torch.zeros_like(m)) for m in policy.mean())

    random = LDSDPolicy(k=1, lr_mu=0.5, init="random_unit", seed=2)
    prob = Quad()
    opt = ZOSGD(prob.parameters(), lr=0.05, policy=random)
    mu0 = random.mean()
    for _ in range(10):
        opt.step(prob)
    assert all(torch.equal(a, b) for a, b in zip(random.mean(), mu0, strict=False))


def test_rloo_coefficients():
    F = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    c = rloo_coefficients(F)
    assert torch.allclose(c, torch.tensor([1 - 3.0, 2 - 2.5, 4 - 1.5], dtype=torch.float64))
    assert abs(float(c.sum())) < 1e-12
    assert torch.equal(rloo_coefficients(torch.tensor([3.0])), torch.zeros(1, dtype=torch.float64))


def test_ldsd_policy_gradient_unbiased_small():
    """E hat g_mu = r grad f(x + r mu) on a quadratic (§5.16). Two-sided z-test per
    coordinate with Bonferroni over the 19 coordinates: family-wise false alarm 1e-3."""
    prob = Quad(seed=4)
    r, sigma, k, n = 0.05, 0.8, 4, 1000
    policy = LDSDPolicy(k=k, sigma=sigma, lr_mu=0.0, init="random_unit", seed=5)
    params = list(prob.parameters())
    policy.bind(params)
    mu = policy.mean()
    samples = []
    for t in range(n):
        est = policy.estimate(
            params,
            prob,
            step_seed=mix_seed(99, t),
            radius=r,
            scheme="central",
            q=1,
            leave_pending=False,
            exact_restore=False,
        )
        assert est.pending is None
        samples.append(torch.cat([g.reshape(-1) for g in policy.last_mean_gradient()]))
    s = torch.stack(samples)
    with torch.no_grad():
        for p, m in zip(params, mu, strict=False):
            p.add_(m, alpha=r)
        target = torch.cat([r * g.reshape(-1) for g in prob.grad()])
        for p, m in zip(params, mu, strict=False):
            p.sub_(m, alpha=r)
    z = (s.mean(0) - target) / (s.std(0) / math.sqrt(n))
    crit = 4.0  # Phi^-1(1 - 1e-3 / (2 * 19)) = 4.04; 4.0 keeps the family-wise rate ~1.2e-3
    assert float(z.abs().max()) < crit, z


def test_ldsd_first_estimate_init_is_a_unit_descent_direction():
    prob = Linear(d=30)
    policy = LDSDPolicy(k=3, lr_mu=0.0, init="first_estimate", init_scale=2.0)
    opt = ZOSGD(prob.parameters(), lr=0.0, policy=policy)
    opt.step(prob)
    (mu,) = policy.mean()
    assert math.isclose(float(mu.norm()), 2.0, rel_tol=1e-9)
    assert float(mu @ prob.g) < 0  # -sign(d0) u: the descent side of the first estimate
    opt.step(prob)
    assert torch.equal(policy.mean()[0], mu)  # only the first step initialises


def test_ldsd_random_unit_init_norms_and_state_bytes():
    prob = Quad(dtype=torch.float32)
    policy = LDSDPolicy(init="random_unit", init_scale=3.0, seed=11)
    opt = ZOSGD(prob.parameters(), lr=1e-3, policy=policy)
    for m in policy.mean():
        assert math.isclose(float(m.norm()), 3.0, rel_tol=1e-5)
    assert policy.state_bytes() == (7 + 12) * 4 == opt.state_bytes()
    half = [torch.zeros(5, dtype=torch.float16)]
    p16 = LDSDPolicy()
    p16.bind(half)
    assert p16.state_bytes() == 5 * 4  # mu kept in fp32 for half-precision parameters


def test_ldsd_stale_family_raises():
    prob = Quad()
    policy = LDSDPolicy(k=3, lr_mu=0.1)
    params = list(prob.parameters())
    est = policy.estimate(
        params, prob, step_seed=1, radius=1e-3, scheme="central", q=1, leave_pending=False, exact_restore=False
    )
    est.materialize(params)  # fine while mu is unchanged
    policy.mean()  # applies the recorded update
    with pytest.raises(RuntimeError, match="mean changed"):
        est.materialize(params)


# ---------------------------------------------------------------------------------- plugging in
PLUG_IN_OPTIMIZERS = ("zo-sgd", "zo-sgd-mmt", "zo-adam", "zo-lmo", "jaguar-signsgd", "adanaged")


def _make_registered(name, params, policy):
    """An optimizer of the registry with its test configuration and ``policy``."""
    spec = OPTIMIZERS[name]
    return spec.make(params, policy=policy, **dict(spec.test_config))


@pytest.mark.parametrize("name", PLUG_IN_OPTIMIZERS)
@pytest.mark.parametrize("policy_index", range(5))
def test_policies_plug_in_and_decrease_a_quadratic(name, policy_index):
    prob = Quad()
    policy = all_policies()[policy_index]
    opt = _make_registered(name, prob.parameters(), policy)
    assert opt.evals_per_step == policy.evals_per_step("central", 1)
    f0 = float(prob().detach())
    steps, target = (150, 0.5) if name.startswith("zo-sgd") else (250, 0.7)  # scale-free updates move slower here
    for _ in range(steps):
        opt.step(prob)
    assert float(prob().detach()) < target * f0


@pytest.mark.parametrize("policy_index", range(5))
def test_jaguar_with_a_policy_and_no_memory_is_sign_descent_on_the_policy_estimate(policy_index):
    """With a policy, JAGUAR's memory is the EMA of the policy's estimates; at ``beta = 0`` the step is
    ``-lr sign(g_hat)``, i.e. ZO-SignSGD (Liu et al. 2019) with the same policy, step for step."""
    from zotheory.optim import JaguarSignSGD, ZOSignSGD

    a, b = Quad(), Quad()
    oa = JaguarSignSGD(a.parameters(), lr=0.01, beta=0.0, eps=1e-3, seed=2, policy=all_policies()[policy_index])
    ob = ZOSignSGD(b.parameters(), lr=0.01, eps=1e-3, seed=2, policy=all_policies()[policy_index])
    x0 = [p.detach().clone() for p in a.parameters()]
    for _ in range(15):
        oa.step(a)
        ob.step(b)
    assert all(torch.equal(p, r) for p, r in zip(a.parameters(), b.parameters(), strict=False))
    assert any(not torch.equal(p, x) for p, x in zip(a.parameters(), x0, strict=False))


def test_adanaged_policy_needs_the_ema_momentum():
    from zotheory.optim import AdaNAGED

    with pytest.raises(ValueError, match="momentum='ema'.*'jaguar'"):
        AdaNAGED(Quad().parameters(), momentum="jaguar", policy=GreedyPolicy(M=3))


# ---------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("policy_index", range(5))
def test_state_dict_resume_is_bit_exact(policy_index):
    def make():
        prob = Quad(dtype=torch.float32)
        opt = ZOSGD(prob.parameters(), lr=0.02, eps=1e-3, momentum=0.5, seed=3, policy=all_policies()[policy_index])
        return prob, opt

    prob, opt = make()
    for _ in range(7):
        opt.step(prob)
    saved_opt = copy.deepcopy(opt.state_dict())
    saved_x = [p.detach().clone() for p in prob.parameters()]
    for _ in range(6):
        opt.step(prob)
    ref_x = [p.detach().clone() for p in prob.parameters()]
    ref_policy = copy.deepcopy(opt.policy.state_dict())

    prob2, opt2 = make()
    with torch.no_grad():
        for p, s in zip(prob2.parameters(), saved_x, strict=False):
            p.copy_(s)
    opt2.load_state_dict(saved_opt)
    for _ in range(6):
        opt2.step(prob2)
    for a, b in zip(ref_x, prob2.parameters(), strict=False):
        assert torch.equal(a, b)
    got_policy = opt2.policy.state_dict()
    if isinstance(opt.policy, LDSDPolicy):
        assert all(torch.equal(a, b) for a, b in zip(ref_policy["mu"], got_policy["mu"], strict=False))
        assert ref_policy["pending"] == got_policy["pending"] and ref_policy["pending"] is not None
    else:
        assert ref_policy == got_policy
    if isinstance(opt.policy, CarriedBestPolicy):
        assert got_policy["best"] is not None


def test_policy_state_mismatch_is_refused():
    prob = Quad()
    opt = ZOSGD(prob.parameters(), policy=CarriedBestPolicy())
    with pytest.raises(ValueError, match="best"):
        opt.policy.load_state_dict({"mu": None})
    plain = ZOSGD(Quad().parameters())
    with pytest.raises(ValueError, match="policy"):
        plain.load_state_dict(opt.state_dict())


# ---------------------------------------------------------------------------------- non-finite
def _failing(prob, bad_call, kind):
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        if calls["n"] == bad_call:
            if kind == "raise":
                raise RuntimeError("boom")
            return torch.tensor(float("nan"))
        return prob()

    return closure


@pytest.mark.parametrize("policy_index", range(5))
@pytest.mark.parametrize("bad_call", [1, 2, 4])  # a candidate, the second candidate, the central pair
@pytest.mark.parametrize("kind", ["nan", "raise"])
def test_nonfinite_or_raising_candidate_restores_parameters(policy_index, bad_call, kind):
    prob = Quad(dtype=torch.float32)
    opt = ZOSGD(prob.parameters(), lr=0.02, eps=1e-2, exact_restore=True, policy=all_policies()[policy_index])
    for _ in range(2):
        opt.step(prob)
    before = [p.detach().clone() for p in prob.parameters()]
    state_before = copy.deepcopy(opt.policy.state_dict())
    err = NonFiniteLossError if kind == "nan" else RuntimeError
    with pytest.raises(err):
        opt.step(_failing(prob, bad_call, kind))
    for a, b in zip(before, prob.parameters(), strict=False):
        assert torch.equal(a, b)
    state_after = opt.policy.state_dict()
    if isinstance(opt.policy, LDSDPolicy):  # the recorded update of the last good step was applied
        assert state_after["pending"] is None
    else:
        assert state_after == state_before


def test_nonfinite_candidate_arithmetic_restore_and_skip():
    prob = Quad(dtype=torch.float64)
    opt = ZOSGD(prob.parameters(), lr=0.02, eps=1e-2, on_nonfinite="skip", policy=GuidedVectorPolicy(M=4))
    before = [p.detach().clone() for p in prob.parameters()]
    loss = opt.step(_failing(prob, 3, "nan"))
    assert math.isnan(float(loss)) and opt.state["zo"]["skipped"] == 1
    for a, b in zip(before, prob.parameters(), strict=False):
        assert torch.allclose(a, b, atol=1e-14)


# ---------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "make, text",
    [
        (lambda: LDSDPolicy(k=0), "k=0"),
        (lambda: LDSDPolicy(k=2.5), "k=2.5"),
        (lambda: LDSDPolicy(sigma=0.0), "sigma=0.0"),
        (lambda: LDSDPolicy(sigma=-1.0), "sigma=-1.0"),
        (lambda: LDSDPolicy(lr_mu=-0.1), "lr_mu=-0.1"),
        (lambda: LDSDPolicy(init="grad"), "init='grad'"),
        (lambda: LDSDPolicy(init_scale=0.0), "init_scale=0.0"),
        (lambda: GuidedVectorPolicy(M=1), "M=1"),
        (lambda: GuidedVectorPolicy(M=8, alpha=0.0), "alpha=0.0"),
        (lambda: GuidedVectorPolicy(M=8, alpha=1.0), "alpha=1.0"),
        (lambda: GuidedVectorPolicy(M=8, alpha=1.5), "alpha=1.5"),
        (lambda: GuidedVectorPolicy(M=4, alpha=0.1), "alpha=0.1"),
        (lambda: GuidedVectorPolicy(M=4, normalize="l2"), "normalize='l2'"),
        (lambda: GreedyPolicy(M=1), "M=1"),
        (lambda: CarriedBestPolicy(normalize="unit"), "normalize='unit'"),
    ],
)
def test_bad_arguments_name_the_value(make, text):
    with pytest.raises(ValueError) as info:
        make()
    assert text in str(info.value)


# ---------------------------------------------------------------------------------- guided vector
@given(M=st.integers(2, 40), alpha=st.floats(0.01, 0.99), seed=st.integers(0, 2**16))
def test_guided_weights_properties(M, alpha, seed):
    top = math.floor(alpha * M)
    if not 1 <= top <= M - 1:
        return
    order = torch.randperm(M, generator=torch.Generator().manual_seed(seed)).tolist()
    w = guided_weights(order, top, "none")
    assert abs(sum(w)) < 1e-12  # mean(top) - mean(bottom)
    assert all(w[j] > 0 for j in order[:top]) and all(w[j] < 0 for j in order[top:])
    c = 1 / top + 1 / (M - top)
    assert math.isclose(sum(x * x for x in w), c, rel_tol=1e-12)
    wn = guided_weights(order, top, "unit_variance")
    assert math.isclose(sum(x * x for x in wn), 1.0, rel_tol=1e-12)


def _chosen_vector(policy, prob, t):
    params = list(prob.parameters())
    est = policy.estimate(
        params,
        prob,
        step_seed=mix_seed(123, t),
        radius=1e-3,
        scheme="central",
        q=1,
        leave_pending=False,
        exact_restore=False,
    )
    (v,) = est.family.materialize(params, est.step_seed, 0)
    return v


@pytest.mark.parametrize(
    "make, part, predicted",
    [
        (lambda: GuidedVectorPolicy(M=2), "all", lambda d: 2.0 * d),
        (lambda: GuidedVectorPolicy(M=2, normalize="unit_variance"), "all", lambda d: float(d)),
        (lambda: CarriedBestPolicy(), "orthogonal", lambda d: 2.0 * (d - 1)),
        (lambda: CarriedBestPolicy(normalize="unit_variance"), "orthogonal", lambda d: float(d - 1)),
        (
            lambda: GuidedVectorPolicy(M=8, alpha=0.5, normalize="unit_variance"),
            "all",
            lambda d: d - 1 + guided_vector_alignment_gain(8, 4),
        ),
        (
            lambda: GuidedVectorPolicy(M=8, alpha=0.5),
            "all",
            lambda d: 0.5 * (d - 1) + 0.5 * guided_vector_alignment_gain(8, 4),
        ),
    ],
)
def test_guided_vector_norm_options(make, part, predicted):
    """E||v||^2 on a linear f: 2d for z_best - z_worst of a fresh pair (§5.20), d after
    unit-variance normalisation; for M = 8, (d - 1) c + E[a^2] (c = 1/2; unit variance:
    d - 1 + G). The carried-best pair is not i.i.d. along g (the carried seed was selected),
    so only the part orthogonal to g has the fresh-pair law, 2(d - 1) (resp. d - 1).
    Two-sided z-test, false alarm 1e-3 each."""
    d, n = 20, (500 if part == "orthogonal" else 700)
    prob = Linear(d=d, seed=2)
    ghat = prob.g / prob.g.norm()
    vals = []
    for t in range(n):
        if part == "orthogonal":  # independent chains: a carried seed makes successive vectors dependent
            policy = make()
            for s in range(2):
                _chosen_vector(policy, prob, 10**6 + 2 * t + s)
        elif t == 0:
            policy = make()
        v = _chosen_vector(policy, prob, t)
        sq = float(v.pow(2).sum())
        vals.append(sq - float(ghat @ v) ** 2 if part == "orthogonal" else sq)
    sq = torch.tensor(vals, dtype=torch.float64)
    se = float(sq.std()) / math.sqrt(n)
    assert abs(float(sq.mean()) - predicted(d)) < Z_CRIT_1E3 * se


def test_carried_best_vector_is_longer_than_a_fresh_pair_along_g():
    """The carried seed keeps winning on a linear f, so E<v, g/|g|>^2 exceeds the fresh-pair
    value 2 (§5.20's 2d does not hold for the public code's carried variant)."""
    prob = Linear(d=20, seed=2)
    ghat = prob.g / prob.g.norm()
    policy = CarriedBestPolicy()
    a2 = torch.tensor([float(ghat @ _chosen_vector(policy, prob, t)) ** 2 for t in range(400)])
    assert float(a2.mean()) > 4.0  # fresh pair: 2; measured ~9 (successive values are dependent, so no z-test)


@pytest.mark.parametrize("make", [lambda: GuidedVectorPolicy(M=2), lambda: CarriedBestPolicy()])
def test_guided_vector_sign_on_linear_f(make):
    """§5.21: for linear f and v = z_best - z_worst, <g, v> <= 0 at every draw."""
    prob = Linear(d=15, seed=1)
    policy = make()
    for t in range(200):
        assert float(prob.g @ _chosen_vector(policy, prob, t)) <= 0.0


def test_greedy_picks_the_lowest_candidate():
    prob = Linear(d=15, seed=1)
    policy = GreedyPolicy(M=5)
    like = [prob.x.detach()]
    for t in range(50):
        v = _chosen_vector(policy, prob, t)
        dots = [float(prob.g @ Gaussian().materialize(like, mix_seed(123, t), j)[0]) for j in range(5)]
        assert math.isclose(float(prob.g @ v), min(dots), rel_tol=1e-12)


def test_carried_best_reevaluates_the_previous_winner():
    prob = Quad()
    policy = CarriedBestPolicy()
    opt = ZOSGD(prob.parameters(), lr=0.02, seed=5, policy=policy)
    opt.step(prob)
    s0 = mix_seed(5, 0)
    assert policy.last["picks"] == [(s0, 0), (s0, 1)]
    winner = policy.best
    assert winner in policy.last["picks"]
    opt.step(prob)
    assert policy.last["picks"] == [(mix_seed(5, 1), 0), winner]


def test_pinned_combinations_check_their_seed():
    fam = PinnedCombinations(Gaussian(), [[(10, 0, 1.0), (10, 1, -1.0)]], step_seed=10)
    like = [torch.zeros(4, dtype=torch.float64)]
    v = fam.materialize(like, 10, 0)[0]
    g = Gaussian()
    assert torch.allclose(v, g.materialize(like, 10, 0)[0] - g.materialize(like, 10, 1)[0])
    with pytest.raises(ValueError, match="step seed"):
        fam.materialize(like, 11, 0)
    with pytest.raises(ValueError, match="direction index"):
        fam.materialize(like, 10, 1)
