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


@pytest.mark.parametrize("name", ["gaussian", "rademacher"])
def test_chunked_draws_of_large_tensors_agree_with_the_dense_direction(monkeypatch, name: str) -> None:
    """Tensors above DRAW_CHUNK entries are perturbed chunk by chunk (bounded scratch); the
    in-place add_ and the dense direction must draw the same numbers, for every tensor."""
    import zotheory.directions as directions

    monkeypatch.setattr(directions, "DRAW_CHUNK", 16)
    family = get_directions(name)
    tensors = [torch.zeros(10, 7), torch.zeros(5), torch.zeros(3, 3, 3)]  # 70 and 27 entries are chunked
    family.add_(tensors, 11, 2, 0.5)
    dense = family.materialize(tensors, 11, 2)
    for t, z in zip(tensors, dense, strict=False):
        assert torch.equal(t, 0.5 * z)
    assert not torch.equal(dense[0].reshape(-1)[:16], dense[0].reshape(-1)[16:32])  # chunks are not repeats


# ---------------------------------------------------------------------------------------------- fast sweeps
@pytest.mark.parametrize("name", ["gaussian", "rademacher"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_fast_sweep_equals_the_dense_axpy(monkeypatch, name: str, dtype: torch.dtype) -> None:
    """``add_`` (packed-sign table for Rademacher, foreach groups, chunks) gives exactly
    the dense axpy ``torch.add(x, z, alpha=a)`` for Python factors and ``round(x + a z)`` formed in fp32
    or wider for 0-d tensor factors, alone and per tensor; on a CPU with grouping switched on (as on a
    GPU) as well."""
    import zotheory.directions as directions

    family = get_directions(name)
    gen = torch.Generator().manual_seed(3)
    base = [torch.randn(s, generator=gen).to(dtype) for s in ([9, 7], [130], [5], [3, 3, 3])]
    factors: list = [0.25, torch.tensor(-0.125, dtype=torch.float64), [0.5, 0, -1.5, torch.tensor(2.0)]]
    for grouped in (False, True):
        if grouped:
            monkeypatch.setattr(directions, "FOREACH_BUDGETS", {"cpu": 100})
            monkeypatch.setattr(directions, "RADEMACHER_CPU_CHUNK", 40)
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
