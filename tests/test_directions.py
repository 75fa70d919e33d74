"""Direction families: seed replay, independence across tensors, no global RNG, second moments.

Shapes used throughout: a 3x2 matrix, a 4-vector and a second 3x2 matrix (d = 16), so that
"same-shaped tensors get different directions" is checked on every family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from zotheory.directions import (
    Block,
    Coordinate,
    DirectionFamily,
    Gaussian,
    LowRank,
    Orthonormal,
    QuantisedGaussian,
    Rademacher,
    Sphere,
    get_directions,
    mix_seed,
)
from zotheory.optim.jaguar import JaguarBlock
from zotheory.optim.muon import SemiOrthogonal

SHAPES = [torch.Size([3, 2]), torch.Size([4]), torch.Size([3, 2])]
D = sum(math.prod(s) for s in SHAPES)


def like(dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    return [torch.zeros(s, dtype=dtype) for s in SHAPES]


def families() -> list[DirectionFamily]:
    return [
        Gaussian(),
        Rademacher(),
        QuantisedGaussian(),
        Sphere(),
        Coordinate(),
        Block(0.5),
        Orthonormal(2),
        LowRank(1),
        LowRank(2),
        SemiOrthogonal("identity"),
        SemiOrthogonal("gaussian"),
        JaguarBlock(0.5),
    ]


FAMILIES = families()
IDS = [repr(f) for f in FAMILIES]


def flat(zs: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([z.reshape(-1) for z in zs])


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_seed_replay_is_bit_exact(family: DirectionFamily) -> None:
    for seed in (0, 1, 2**40 + 3):
        for j in range(2):
            a = family.materialize(like(), seed, j)
            b = family.materialize(like(), seed, j)
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=False))
    assert not torch.equal(flat(family.materialize(like(), 5, 0)), flat(family.materialize(like(), 6, 0)))
    assert not torch.equal(flat(family.materialize(like(), 5, 0)), flat(family.materialize(like(), 5, 1)))


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_add_matches_the_dense_direction(family: DirectionFamily) -> None:
    """``add_(x, alpha)`` equals ``x + alpha z`` for scalar, per-tensor and 0-d tensor factors."""
    gen = torch.Generator().manual_seed(0)
    x = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    z = family.materialize(x, 9, 1)
    for alpha in (0.3, [0.5, 0, -2.0], torch.tensor(-0.7, dtype=torch.float64)):
        y = [t.clone() for t in x]
        family.add_(y, 9, 1, alpha)
        alphas = alpha if isinstance(alpha, list) else [alpha] * len(x)
        for yi, xi, zi, ai in zip(y, x, z, alphas, strict=False):
            assert torch.allclose(yi, xi + float(ai) * zi, rtol=0, atol=1e-15)


@pytest.mark.parametrize("family", [f for f in FAMILIES if not isinstance(f, Coordinate)], ids=lambda f: repr(f))
def test_same_shaped_tensors_get_different_directions(family: DirectionFamily) -> None:
    """Tensors 0 and 2 have the same shape; their directions must differ (the tensor index enters the
    seed — the JAGUAR v3 bug of re-seeding every tensor identically, ``docs/theory.md`` §6.4)."""
    shapes = [torch.zeros(8, 6), torch.zeros(5), torch.zeros(8, 6)]
    for seed in range(5):
        z = family.materialize(shapes, seed, 0)
        assert not torch.equal(z[0], z[2])


def test_coordinate_draws_one_entry_over_all_tensors() -> None:
    counts = np.zeros(D)
    for seed in range(1600):
        z = flat(Coordinate().materialize(like(), seed, 0))
        assert int((z != 0).sum()) == 1 and float(z.sum()) == 1.0
        counts[int(torch.nonzero(z)[0])] += 1
    # chi-square goodness of fit to the uniform law; false-alarm probability 1e-3
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_no_global_rng_is_touched(family: DirectionFamily) -> None:
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    family.materialize(like(), 3, 0)
    family.add_(like(), 3, 1, 0.5)
    family.dot(like(), 3, 0)
    assert torch.equal(state, torch.get_rng_state())


def _expected_second_moment(family: DirectionFamily) -> torch.Tensor:
    """``E[z z^T]`` in closed form: ``I / scale`` for the isotropic families (``directions.py`` table);
    ``diag(p_l)`` for :class:`JaguarBlock` (``p_l``: inclusion probability of an entry of tensor ``l``:
    ``(ceil(f m)/m)(ceil(f n)/n)`` for matrices, ``ceil(f n)/n`` for vectors)."""
    if isinstance(family, JaguarBlock):
        probs = []
        for s in SHAPES:
            rows, cols = s[0], math.prod(s) // s[0]
            if len(s) >= 2:
                p = (math.ceil(family.fraction * rows) / rows) * (math.ceil(family.fraction * cols) / cols)
            else:
                p = math.ceil(family.fraction * rows) / rows
            probs += [p] * math.prod(s)
        return torch.diag(torch.tensor(probs, dtype=torch.float64))
    return torch.eye(D, dtype=torch.float64) / family.scale(D)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_second_moment_matrix(family: DirectionFamily) -> None:
    """``E[z z^T]`` from 2,000 seeds (600 for Orthonormal, whose QR is slow) against its closed form.

    z-test per entry with the sample standard error and a Bonferroni correction over the ``d^2 = 256``
    entries: false-alarm probability <= 1e-3 per family. Entries whose samples are constant (e.g. the
    diagonal of Rademacher, the off-diagonal of Coordinate) must equal the closed form exactly."""
    n = 600 if isinstance(family, Orthonormal) else 2000
    outer = torch.stack([torch.outer(z, z) for z in (flat(family.materialize(like(), s, 0)) for s in range(n))])
    mean, sd = outer.mean(0), outer.std(0)
    target = _expected_second_moment(family)
    z_crit = stats.norm.isf(1e-3 / (2 * D * D))
    tol = z_crit * sd / math.sqrt(n) + 1e-12
    excess = (mean - target).abs() - tol
    assert float(excess.max()) <= 0, f"{family!r}: worst entry off by {float((mean - target).abs().max()):.3g}"


def test_block_and_semiorthogonal_norms_are_deterministic() -> None:
    """``||z_l||^2 = numel(l)`` exactly for Block (``k_r k_c`` entries of size ``1/p``) and for the
    identity-spectrum SemiOrthogonal (``min(m,n) * max(m,n)``); every entry of Rademacher is +-1."""
    for seed in range(20):
        for family in (Block(0.5), SemiOrthogonal("identity"), Rademacher()):
            for z, s in zip(family.materialize(like(), seed, 0), SHAPES, strict=False):
                if isinstance(family, SemiOrthogonal) and len(s) < 2:
                    continue  # vectors get Gaussian directions
                assert math.isclose(float((z * z).sum()), math.prod(s), rel_tol=1e-12)


def test_semiorthogonal_polar_factor() -> None:
    """The factors are orthonormal frames and ``polar`` is the polar factor of the direction (its SVD's
    ``U V^T``), for a wide, a tall and a 3-d (matrix-viewed) tensor."""
    family = SemiOrthogonal("gaussian")
    shapes = (torch.Size([4, 7]), torch.Size([7, 4]), torch.Size([3, 2, 2]))
    for i in range(3):
        u, s, v = family.factors(shapes, i, 11, 0, torch.float64, torch.device("cpu"))
        k = s.numel()
        assert torch.allclose(u.T @ u, torch.eye(k, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(v.T @ v, torch.eye(k, dtype=torch.float64), atol=1e-12)
        e = family.tensor_direction(shapes, i, 11, 0, torch.float64, torch.device("cpu"))
        uu, _, vh = torch.linalg.svd(e.reshape(e.shape[0], -1), full_matrices=False)
        polar = family.polar(shapes, i, 11, 0, torch.float64, torch.device("cpu"))
        assert torch.allclose(polar.reshape(e.shape[0], -1), uu @ vh, atol=1e-10)


def test_half_precision_directions_are_roundings_for_matrix_families() -> None:
    """SemiOrthogonal computes its factors in float32 for half dtypes: the float16 direction is the
    rounding of the float32 one (so estimates widened to float32 stay consistent)."""
    family = SemiOrthogonal()
    z16 = family.materialize(like(torch.float16), 4, 0)
    z32 = family.materialize(like(torch.float32), 4, 0)
    assert all(torch.equal(a, b.half()) for a, b in zip(z16[::2], z32[::2], strict=False))


def test_get_directions_names_and_errors() -> None:
    assert isinstance(get_directions("gaussian"), Gaussian)
    with pytest.raises(ValueError, match="'gauss'"):
        get_directions("gauss")
    with pytest.raises(ValueError, match="1.5"):
        Block(1.5)
    with pytest.raises(ValueError, match="'ones'"):
        SemiOrthogonal("ones")
    with pytest.raises(ValueError, match="q=3"):
        Orthonormal(3).materialize([torch.zeros(2)], 0, 0)


@given(
    seed=st.integers(min_value=0, max_value=2**62),
    parts=st.lists(st.integers(min_value=0, max_value=2**63), min_size=1, max_size=4),
)
def test_mix_seed_is_a_deterministic_63_bit_hash(seed: int, parts: list[int]) -> None:
    a = mix_seed(seed, *parts)
    assert a == mix_seed(seed, *parts)
    assert 0 <= a < 2**63
    assert a != mix_seed(seed, *parts, 0)


@pytest.mark.parametrize("name", ["gaussian", "rademacher", "qgaussian"])
def test_chunked_draws_of_large_tensors_agree_with_the_dense_direction(monkeypatch, name: str) -> None:
    """Tensors above DRAW_CHUNK entries are perturbed chunk by chunk (bounded scratch); the
    in-place add_ and the dense direction must draw the same numbers, for every tensor."""
    import zotheory.directions as directions

    monkeypatch.setattr(directions, "DRAW_CHUNK", 16)
    monkeypatch.setattr(directions, "TABLE_CPU_CHUNK", 16)
    family = get_directions(name)
    tensors = [torch.zeros(10, 7), torch.zeros(5), torch.zeros(3, 3, 3)]  # 70 and 27 entries are chunked
    family.add_(tensors, 11, 2, 0.5)
    dense = family.materialize(tensors, 11, 2)
    for t, z in zip(tensors, dense, strict=False):
        assert torch.equal(t, 0.5 * z)
    assert not torch.equal(dense[0].reshape(-1)[:16], dense[0].reshape(-1)[16:32])  # chunks are not repeats


# ---------------------------------------------------------------------------------------------- fast sweeps
@pytest.mark.parametrize("name", ["gaussian", "rademacher", "qgaussian"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_fast_sweep_equals_the_dense_axpy(monkeypatch, name: str, dtype: torch.dtype) -> None:
    """``add_`` (packed-sign table for Rademacher, foreach groups, chunks) gives exactly
    the dense axpy ``torch.add(x, z, alpha=a)`` for Python factors and ``round(x + a z)`` formed in fp32
    or wider for 0-d tensor factors, alone and per tensor; on a CPU with grouping switched on (as on a
    GPU) as well."""
    import zotheory.directions as directions

    monkeypatch.setattr(directions, "SCRATCH_MIN", 8)  # chunks of >= 8 entries go through the scratch buffers
    family = get_directions(name)
    gen = torch.Generator().manual_seed(3)
    base = [torch.randn(s, generator=gen).to(dtype) for s in ([9, 7], [130], [5], [3, 3, 3])]
    factors: list = [0.25, torch.tensor(-0.125, dtype=torch.float64), [0.5, 0, -1.5, torch.tensor(2.0)]]
    for grouped in (False, True):
        if grouped:
            monkeypatch.setattr(directions, "FOREACH_BUDGETS", {"cpu": 100})
            monkeypatch.setattr(directions, "TABLE_CPU_CHUNK", 40)
        for alpha in factors:
            xs = [b.clone() for b in base]
            family.add_(xs, 17, 1, alpha)
            zs = family.materialize(base, 17, 1)
            alphas = alpha if isinstance(alpha, list) else [alpha] * len(base)
            for x, b, z, a in zip(xs, base, zs, alphas, strict=False):
                wide = torch.promote_types(dtype, torch.float32)
                if isinstance(a, torch.Tensor):  # multiplied in first, then added
                    expected = (b.to(wide) + a.to(wide) * z.to(wide)).to(dtype)
                else:  # the dense axpy in the tensor's dtype (the factors are exact in fp16)
                    expected = torch.add(b, z, alpha=float(a))
                assert torch.equal(x, expected), (name, dtype, grouped, alpha)


def test_rademacher_signs_are_fair_and_replayed() -> None:
    """Packed-byte signs: every entry is +-1, replay is bit-identical, and the fraction of +1 among
    n = 2^18 entries lies within 5 standard errors of 1/2 (false alarm ~6e-7)."""
    family = Rademacher()
    z = family.materialize([torch.zeros(1 << 18)], 99, 0)[0]
    assert bool(((z == 1) | (z == -1)).all())
    assert torch.equal(z, family.materialize([torch.zeros(1 << 18)], 99, 0)[0])
    frac = float((z > 0).double().mean())
    assert abs(frac - 0.5) <= 5 * 0.5 / math.sqrt(z.numel())
    # neighbouring bits of one byte are independent: the lag-1 sign correlation is ~N(0, 1/n)
    corr = float((z[1:] * z[:-1]).double().mean())
    assert abs(corr) <= 5 / math.sqrt(z.numel())


def test_draw_chunk_is_per_device() -> None:
    from zotheory.directions import DEVICE_DRAW_CHUNKS, DRAW_CHUNK, draw_chunk

    assert draw_chunk("cpu") == DRAW_CHUNK
    assert draw_chunk("cuda") == DEVICE_DRAW_CHUNKS["cuda"] > DRAW_CHUNK
    assert Rademacher().chunk_size(torch.device("cpu")) < DRAW_CHUNK
    assert Rademacher().chunk_size(torch.device("cuda")) == DEVICE_DRAW_CHUNKS["cuda"]


# ------------------------------------------------------------------------- fast paths against their references
def test_gaussian_draws_are_torch_randn_chunk_by_chunk(monkeypatch) -> None:
    """Reusing a scratch buffer does not change the Gaussian numbers: a chunked tensor's direction is the
    concatenation of ``torch.randn(chunk, generator=g)`` on the tensor's generator, in the sweep as well."""
    import zotheory.directions as directions

    monkeypatch.setattr(directions, "DRAW_CHUNK", 32)
    shapes = [torch.Size([10, 7]), torch.Size([5])]
    gen = directions.tensor_generator(directions.mix_seed(21, 1), 0)
    expected = torch.cat([torch.randn(n, generator=gen) for n in (32, 32, 6)]).view(10, 7)
    assert torch.equal(Gaussian().tensor_direction(shapes, 0, 21, 1, torch.float32, torch.device("cpu")), expected)
    xs = [torch.zeros(s) for s in shapes]
    Gaussian().add_(xs, 21, 1, 1.0)
    assert torch.equal(xs[0], expected)


@pytest.mark.parametrize("name", ["gaussian", "rademacher", "qgaussian"])
def test_sweep_there_and_back_is_the_dense_round_trip(monkeypatch, name: str) -> None:
    """``add_(+a)`` then ``add_(-a)`` (perturb, then undo) gives bit for bit the dense ``(x + a z) - a z``, with
    tensors of several sizes so that a chunk's scratch buffers are reused across chunks and tensors. For
    Rademacher with ``a = 2^-4`` on fp64 parameters of size ~1 the round trip is exact: they come back unchanged."""
    import zotheory.directions as directions

    monkeypatch.setattr(directions, "DRAW_CHUNK", 64)
    monkeypatch.setattr(directions, "TABLE_CPU_CHUNK", 64)
    monkeypatch.setattr(directions, "SCRATCH_MIN", 16)
    family = get_directions(name)
    gen = torch.Generator().manual_seed(5)
    base = [torch.randn(s, generator=gen) for s in ([300], [7, 9], [5], [64], [200, 3])]
    zs = family.materialize(base, 8, 3)
    for a in (0.37, torch.tensor(-1.3, dtype=torch.float64)):
        xs = [b.clone() for b in base]
        family.add_(xs, 8, 3, a)
        family.add_(xs, 8, 3, -a)
        af = torch.tensor(float(a))
        for x, b, z in zip(xs, base, zs, strict=True):
            if isinstance(a, torch.Tensor):
                there = b + af * z
                back = there + (-af) * z
            else:
                back = torch.add(torch.add(b, z, alpha=float(a)), z, alpha=-float(a))
            assert torch.equal(x, back), name
    xs = [b.double() for b in base]
    family.add_(xs, 8, 3, 2.0**-4)
    family.add_(xs, 8, 3, -(2.0**-4))
    if name == "rademacher":
        assert all(torch.equal(x, b.double()) for x, b in zip(xs, base, strict=True))


def directions_generator(step_seed: int, index: int, j: int = 0) -> torch.Generator:
    """A fresh copy of the generator that draws direction ``j`` of tensor ``index`` under ``step_seed``."""
    import zotheory.directions as directions

    return directions.tensor_generator(directions.mix_seed(step_seed, j), index)


def test_rademacher_uses_every_bit_of_its_64_bit_words() -> None:
    """Entry ``64 m + b`` is bit ``b`` of word ``m`` (bytes in memory order, LSB first); the words come from
    ``random_`` over the full int64 range, so every bit position, the sign bit 63 included, is a fair coin:
    over 4,096 words each position's fraction of +1 is within z_crit standard errors of 1/2 (Bonferroni
    over 64 positions, false-alarm probability 1e-3)."""
    z = Rademacher().materialize([torch.zeros(64 * 4096)], 31, 0)[0].view(4096, 64)
    frac = (z > 0).double().mean(0)
    z_crit = stats.norm.isf(1e-3 / (2 * 64))
    assert float((frac - 0.5).abs().max()) <= z_crit * 0.5 / math.sqrt(4096)
    gen = directions_generator(31, 0)
    words = torch.empty(4096, dtype=torch.int64).random_(-(2**63), None, generator=gen)
    bits = (words.view(torch.uint8).view(4096, 8, 1).int() >> torch.arange(8)) & 1
    assert torch.equal(z, (2 * bits.view(4096, 64) - 1).float())


def test_quantised_gaussian_table_moments() -> None:
    """The 2^16 quantile table is antisymmetric (``t[-1 - k] = -t[k]`` exactly, so the mean is exactly 0, in
    fp32 and fp16 alike), increasing, with mean square 1 (1e-9 in fp32) and 4th moment 2.99925 (Gaussian: 3)."""
    from zotheory.directions import _normal_quantile_table

    for dtype, tol in ((torch.float32, 1e-9), (torch.float16, 4e-6)):
        t = _normal_quantile_table(dtype, torch.device("cpu"))
        assert t.numel() == 1 << 16 and torch.equal(t.flip(0), -t)
        assert bool((t[1:] >= t[:-1]).all())
        m = t.double()
        assert float(m.sum()) == 0.0
        assert abs(float(m.square().mean()) - 1.0) <= tol
    m4 = float(_normal_quantile_table(torch.float32, torch.device("cpu")).double().pow(4).mean())
    assert abs(m4 - 2.99925) <= 1e-5


def test_quantised_gaussian_estimator_is_unbiased_with_its_second_moment() -> None:
    """``X = <g, z> z`` with i.i.d. table entries: ``E X = g`` and ``E||X||^2 = ||g||^2 (d - 1 + m4)`` (expand
    ``E[z_i z_j z_k^2]``; ``m4 = E z^4 = 2.99925``). 4,000 seeds, d = 16, z-tests per coordinate (Bonferroni
    over d) and on the mean square, false-alarm probability 1e-3 each."""
    n = 4000
    g = torch.linspace(-1.0, 2.0, D, dtype=torch.float64)
    zs = torch.stack([flat(QuantisedGaussian().materialize(like(), s, 0)) for s in range(n)])
    x = (zs @ g).unsqueeze(1) * zs
    se = x.std(0) / math.sqrt(n)
    assert bool(((x.mean(0) - g).abs() <= stats.norm.isf(1e-3 / (2 * D)) * se).all())
    sq = (x * x).sum(1)
    predicted = float(g @ g) * (D - 1 + 2.99925)
    assert abs(float(sq.mean()) - predicted) <= stats.norm.isf(1e-3 / 2) * float(sq.std()) / math.sqrt(n)


def test_quantised_gaussian_draws_are_uniform_over_the_table() -> None:
    """Every entry is a table value, replay is bit-identical, and the 2^16 table indices of 2^18 entries are
    uniform: chi-square over the 256 high bytes, false-alarm probability 1e-3."""
    from zotheory.directions import _normal_quantile_table

    table = _normal_quantile_table(torch.float32, torch.device("cpu"))
    z = QuantisedGaussian().materialize([torch.zeros(1 << 18)], 99, 0)[0]
    assert torch.equal(z, QuantisedGaussian().materialize([torch.zeros(1 << 18)], 99, 0)[0])
    idx = torch.searchsorted(table, z)
    assert torch.equal(table[idx], z)
    counts = torch.bincount(idx >> 8, minlength=256).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("name", ["rademacher", "qgaussian"])
def test_table_family_draws_do_not_depend_on_the_cpu_chunk(monkeypatch, name: str) -> None:
    """The table families read one stream of 64-bit words per tensor, so any CPU chunk that is a multiple of
    64 entries (tuned per machine: :data:`TABLE_CPU_CHUNK`) gives the same directions, dense and swept."""
    import zotheory.directions as directions

    family = get_directions(name)
    shapes = [torch.zeros(1000, 3), torch.zeros(77)]
    reference = family.materialize(shapes, 4, 2)
    for chunk in (64, 192, 1 << 11):
        monkeypatch.setattr(directions, "TABLE_CPU_CHUNK", chunk)
        assert all(torch.equal(a, b) for a, b in zip(family.materialize(shapes, 4, 2), reference, strict=True))
        xs = [torch.zeros_like(t) for t in shapes]
        family.add_(xs, 4, 2, 1.0)
        assert all(torch.equal(a, b) for a, b in zip(xs, reference, strict=True))


@pytest.mark.parametrize("name", ["rademacher", "qgaussian"])
def test_zo_sgd_with_a_table_family_follows_its_dense_reference(monkeypatch, name: str) -> None:
    """30 float64 ZO-SGD steps, in place (chunked sweeps through the scratch buffers, restore folded into
    the update) and by the literal dense reference (``zotheory.optim.reference``), stay within 1e-10:
    they differ only by the rounding of the folded restore."""
    import zotheory.directions as directions
    from zotheory.optim.reference import ReferenceZOSGD
    from zotheory.optim.zosgd import ZOSGD

    monkeypatch.setattr(directions, "TABLE_CPU_CHUNK", 64)
    monkeypatch.setattr(directions, "SCRATCH_MIN", 16)
    gen = torch.Generator().manual_seed(2)
    start = [
        torch.randn(20, 15, generator=gen, dtype=torch.float64),
        torch.randn(9, generator=gen, dtype=torch.float64),
    ]
    fast = [torch.nn.Parameter(t.clone(), requires_grad=False) for t in start]
    slow = [t.clone() for t in start]
    opt = ZOSGD(fast, lr=5e-4, eps=1e-4, directions=name, seed=3)
    ref = ReferenceZOSGD(opt, slow)

    def loss(ps: Sequence[torch.Tensor]) -> torch.Tensor:
        return 0.5 * (ps[0] ** 2).sum() + (ps[1] ** 4).sum() / 4

    for _ in range(30):
        opt.step(lambda: loss(fast))
        ref.step(lambda: loss(slow))
    assert max(float((a - b).abs().max()) for a, b in zip(fast, slow, strict=True)) <= 1e-10
    assert float(loss(fast)) < float(loss(start))  # and the steps went somewhere: the loss decreased
