"""Perturbation directions, regenerated from seeds instead of stored.

A direction ``z`` for a list of tensors (the parameter blocks of a model or problem) is
identified by ``(step_seed, j)``: the step's seed and the index ``j`` of the direction
within the step (``j = 0 .. q-1``). Every random draw comes from a private
``torch.Generator`` seeded with ``mix_seed(step_seed, j, tensor_index)``, so

* regenerating with the same seed gives bit-identical tensors (MeZO's trick: the memory
  cost of a direction is one integer, Malladi et al. 2023, Alg. 1);
* tensors of the same shape get independent draws (the tensor index enters the seed;
  the bug of re-seeding every tensor with the same seed, ``docs/theory.md`` §1.5,
  cannot happen);
* nothing touches the global RNG.

Scaling convention. Each family has a scalar ``scale(dim)`` such that the directional
derivative estimator ``scale * <g, z> z`` is unbiased, ``E[scale * z z^T] = I``:

=============  ===============================================  ==============
family         z                                                 scale(d)
=============  ===============================================  ==============
gaussian       N(0, I)                                           1
rademacher     uniform on {-1, +1}^d                             1
qgaussian      i.i.d. uniform over 65,536 normal quantiles       1
               (mean 0, mean square 1; a cheap Gaussian stand-in)
sphere         uniform on the unit sphere S^{d-1}                d (Flaxman)
coordinate     e_i, i uniform on {1..d}                          d
block          Rademacher signs on a random block, times 1/sqrt(p_l) 1
               (p_l = the block's inclusion probability in tensor l)
orthonormal    column j of a Haar d x q frame (unit columns)     d
lowrank        U V^T / sqrt(r) per matrix, Gaussian elsewhere     1
=============  ===============================================  ==============

With these, the two-point estimator ``scale * (f(x + r z) - f(x - r z)) / (2 r) * z`` is
the Gaussian-smoothing oracle of Nesterov & Spokoiny (2017) for ``gaussian`` and the
sphere-smoothing oracle of Flaxman et al. (2005) with ``delta = r`` for ``sphere``
(``docs/theory.md`` §3.1 and 3.3).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache

import torch

Shapes = tuple[torch.Size, ...]
Alpha = float | torch.Tensor
Alphas = Alpha | Sequence[Alpha]

_MASK64 = (1 << 64) - 1
_JOINT_INDEX = (1 << 31) - 1  # tensor index reserved for draws shared by all tensors


def _splitmix64(x: int) -> int:
    """One round of the splitmix64 finaliser (Steele, Lea & Flood 2014)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """Hash integers into one 63-bit seed; different tuples give unrelated seeds."""
    h = 0x2545F4914F6CDD1D
    for part in parts:
        h = _splitmix64(h ^ (int(part) & _MASK64))
    return h >> 1


def tensor_generator(seed: int, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A private generator for tensor ``index`` under ``seed`` (never the global RNG)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(mix_seed(seed, index))
    return gen


_DRAW_GENERATORS: dict[torch.device, torch.Generator] = {}


def _device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device`` (no new object when it already is one: this runs per tensor and chunk)."""
    return device if isinstance(device, torch.device) else torch.device(device)


def draw_generator(seed: int, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of :func:`tensor_generator`, but one cached object per device, re-seeded.

    ``manual_seed`` resets the whole state (mt19937 on CPUs, Philox seed and offset on
    GPUs), so draws are bit-identical to those of a fresh generator; re-seeding avoids
    creating ~3 generators per tensor per step (1,200 per step for OPT-1.3B). The object is
    shared: use it for the draws of one tensor, before the next call.
    """
    key = _device(device)
    gen = _DRAW_GENERATORS.get(key)
    if gen is None:
        gen = _DRAW_GENERATORS[key] = torch.Generator(device=device)
    gen.manual_seed(mix_seed(seed, index))
    return gen


def _direction_seed(step_seed: int, j: int) -> int:
    return mix_seed(step_seed, j)


def _as_alphas(alpha: Alphas, n: int) -> list[Alpha]:
    if isinstance(alpha, (float, int, torch.Tensor)):
        return [alpha] * n
    alphas = list(alpha)
    if len(alphas) != n:
        raise ValueError(f"got {len(alphas)} per-tensor step factors for {n} tensors")
    return alphas


def _is_zero(alpha: Alpha) -> bool:
    return not isinstance(alpha, torch.Tensor) and alpha == 0


def _axpy_(p: torch.Tensor, z: torch.Tensor, alpha: Alpha) -> None:
    """``p += alpha * z`` in place; ``z`` is a scratch tensor and may be overwritten."""
    if isinstance(alpha, torch.Tensor):
        p.add_(z.mul_(alpha.to(z.dtype)))
    else:
        p.add_(z, alpha=float(alpha))


class DirectionFamily(ABC):
    """A law for perturbation directions over a list of tensors, regenerated from seeds.

    Subclasses implement :meth:`tensor_direction`; the dense and in-place operations are
    built on it. ``typical_entry(d)`` is the typical magnitude of one entry of ``z``
    (used to check that ``radius * |z_i|`` is not below a dtype's resolution).
    """

    name: str = "abstract"

    @abstractmethod
    def scale(self, dim: int) -> float:
        """The factor making ``scale * <g, z> z`` unbiased for ``g`` (module docstring)."""

    def typical_entry(self, dim: int) -> float:
        return 1.0

    @abstractmethod
    def tensor_direction(
        self, shapes: Shapes, index: int, step_seed: int, j: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Dense ``z_j`` restricted to tensor ``index`` (a fresh tensor the caller may overwrite)."""

    def materialize(self, like: Sequence[torch.Tensor], step_seed: int, j: int = 0) -> list[torch.Tensor]:
        """``z_j`` as dense tensors shaped like ``like`` (for tests and theory checks)."""
        shapes = _shapes(like)
        return [self.tensor_direction(shapes, i, step_seed, j, t.dtype, t.device) for i, t in enumerate(like)]

    def add_(self, tensors: Sequence[torch.Tensor], step_seed: int, j: int, alpha: Alphas) -> None:
        """``tensors[i] += alpha_i * z_j[i]`` in place, one tensor-sized scratch at a time.

        ``alpha`` is one factor for all tensors or a sequence with one per tensor (a
        Python ``0`` skips a tensor without drawing it); factors may be 0-d tensors,
        which avoids a host synchronisation.
        """
        shapes = _shapes(tensors)
        for i, (p, a) in enumerate(zip(tensors, _as_alphas(alpha, len(tensors)), strict=False)):
            if _is_zero(a):
                continue
            _axpy_(p, self.tensor_direction(shapes, i, step_seed, j, p.dtype, p.device), a)

    def dot(self, tensors: Sequence[torch.Tensor], step_seed: int, j: int = 0) -> torch.Tensor:
        """``<v, z_j>`` accumulated in float64, without materialising ``z_j`` at once."""
        shapes = _shapes(tensors)
        total = torch.zeros((), dtype=torch.float64, device=tensors[0].device)
        for i, v in enumerate(tensors):
            z = self.tensor_direction(shapes, i, step_seed, j, v.dtype, v.device)
            total += torch.sum(v.double() * z.double())
        return total

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _shapes(tensors: Sequence[torch.Tensor]) -> Shapes:
    return tuple(t.shape for t in tensors)


def _numel(shape: torch.Size) -> int:
    return math.prod(shape)


#: Tensors with more entries than this draw their directions in chunks of this size, so the
#: in-place perturbation needs one chunk of scratch (16 MiB in fp32), not one tensor-sized
#: direction (the OPT-1.3B embedding alone is 7.6% of the model). Smaller tensors draw in one
#: piece, identically to ``torch.randn(shape, generator=...)``. This is the CPU (and default) size.
DRAW_CHUNK = 1 << 22

#: Chunk sizes per device type where they differ from :data:`DRAW_CHUNK`. On a GPU every chunk
#: costs a few kernel launches, so chunks are 4x larger (64 MiB of fp32 scratch, 2.4% of
#: OPT-1.3B in fp16); on the CPU the draw itself dominates and 16 MiB keeps the scratch cache-friendly.
DEVICE_DRAW_CHUNKS: dict[str, int] = {"cuda": 1 << 24}

#: Per device type: small tensors whose directions are drawn one after the other and then added
#: with one ``torch._foreach_add_`` call, up to this many entries of scratch at a time (one launch
#: for the group instead of one per tensor on a GPU; the draws are unchanged). Absent (CPU): no
#: grouping, each tensor is added right after its draw while the draw is still in cache.
FOREACH_BUDGETS: dict[str, int] = {"cuda": 1 << 20}

#: Chunk size of the table-driven families (:class:`Rademacher`, :class:`QuantisedGaussian`) on the CPU.
#: Each chunk runs about ten small tensor operations (~25 us of overhead on a loaded core), so larger chunks
#: win until the chunk's buffers outgrow the caches; with 2^19 entries (a 2 MiB fp32 addend) both families
#: were within 3% of their fastest of 2^16 .. 2^20 for MiniLM's 22.7M parameters on one core, against 40%
#: slower at 2^16 (``results/benchmarks/direction_sweeps_minilm.json``, CPU time).
#: The numbers drawn do not depend on it: the words are one stream per tensor, and a chunk that is a
#: multiple of 64 entries consumes whole words.
TABLE_CPU_CHUNK = 1 << 19

#: Reused 1-D buffers of the in-place sweeps, one per (device, dtype): a chunk's draws, words and indices
#: are written into them instead of fresh allocations (one thread: ``torch.randn`` of 2^22 fresh entries took
#: 4.8 ns per entry, ``normal_`` into a reused buffer 3.4). Never returned by
#: :meth:`DirectionFamily.tensor_direction`.
_SCRATCH: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


#: Chunks below this many entries are drawn into fresh tensors even in sweeps (a small allocation costs less
#: than the bookkeeping of the scratch buffers; the numbers are the same either way).
SCRATCH_MIN = 1 << 12


def _scratch(n: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """A reused buffer of ``n`` entries (:data:`_SCRATCH`); valid until the next call with the same key."""
    key = (_device(device), dtype)
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < n:
        buf = _SCRATCH[key] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n]


def draw_chunk(device: torch.device | str) -> int:
    """The draw chunk of a device (:data:`DRAW_CHUNK` unless :data:`DEVICE_DRAW_CHUNKS` names its type)."""
    return DEVICE_DRAW_CHUNKS.get(_device(device).type, DRAW_CHUNK)


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype in which ``alpha * z`` is formed for an update of a ``dtype`` tensor (fp32 for half types)."""
    return torch.promote_types(dtype, torch.float32)


class _ChunkedIID(DirectionFamily):
    """Families of i.i.d. entries, drawn chunk by chunk from one generator per tensor.

    The chunking depends only on the tensor size and the device (:meth:`chunk_size`), so the
    in-place sweep (:meth:`add_`) and the dense direction (:meth:`tensor_direction`) draw the
    same numbers. Subclasses implement :meth:`_draw` and may override :meth:`_addend`
    (``alpha * z`` for a chunk, cheaper than drawing ``z`` then scaling it) and :meth:`chunk_size`.
    """

    def chunk_size(self, device: torch.device) -> int:
        """Entries drawn per chunk on ``device``."""
        return draw_chunk(device)

    @abstractmethod
    def _draw(
        self, n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device, reuse: bool
    ) -> torch.Tensor:
        """One chunk of ``n`` entries of ``z``: a fresh tensor, or with ``reuse`` one living in :func:`_scratch`
        buffers (valid until the next chunk)."""

    def _chunk(self, n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return self._draw(n, gen, dtype, device, reuse=False)

    def _addend(
        self, n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device, alpha: Alpha, reuse: bool
    ) -> tuple[torch.Tensor, float]:
        """``(t, s)`` with ``s * t = alpha * z`` for one chunk, for ``p.add_(t, alpha=s)``.

        A Python ``alpha`` stays a scalar of the add (one fused pass, one rounding); a 0-d tensor ``alpha``
        (no host synchronisation) is multiplied in, in fp32 for half-precision tensors."""
        z = self._draw(n, gen, dtype, device, reuse)
        if isinstance(alpha, torch.Tensor):
            z = z.to(_wide(dtype))
            return z.mul_(alpha.to(z.dtype)), 1.0
        return z, float(alpha)

    def _chunks(self, numel: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device):
        chunk = self.chunk_size(device)
        for start in range(0, numel, chunk):
            n = min(chunk, numel - start)
            yield start, n, self._chunk(n, gen, dtype, device)

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        shape = shapes[index]
        numel = _numel(shape)
        gen = draw_generator(_direction_seed(step_seed, j), index, device)
        if numel <= self.chunk_size(torch.device(device)):
            return self._chunk(numel, gen, dtype, device).view(shape)
        out = torch.empty(numel, dtype=dtype, device=device)
        for start, n, z in self._chunks(numel, gen, dtype, device):
            out[start : start + n] = z
        return out.view(shape)

    def add_(self, tensors, step_seed, j, alpha):
        """``tensors[i] += alpha_i z_j[i]``: chunk by chunk through reused :func:`_scratch` buffers (no allocation
        per chunk), or, for small tensors on devices listed in :data:`FOREACH_BUDGETS`, in groups added by one
        ``torch._foreach_add_`` (same draws, same sums)."""
        seed = _direction_seed(step_seed, j)
        group_p: list[torch.Tensor] = []
        group_t: list[torch.Tensor] = []
        group = {"n": 0, "s": 1.0}

        def flush() -> None:
            if group_p:
                torch._foreach_add_(group_p, group_t, alpha=group["s"])
                group_p.clear()
                group_t.clear()
                group["n"] = 0

        for i, (p, a) in enumerate(zip(tensors, _as_alphas(alpha, len(tensors)), strict=False)):
            if _is_zero(a):
                continue
            chunk = self.chunk_size(p.device)
            budget = FOREACH_BUDGETS.get(p.device.type, 0)
            numel = p.numel()
            if not p.is_contiguous():
                _axpy_(p, self.tensor_direction(_shapes(tensors), i, step_seed, j, p.dtype, p.device), a)
                continue
            gen = draw_generator(seed, i, p.device)
            if numel <= min(chunk, budget):  # grouped: the addends must outlive the next draw, so fresh ones
                t, s = self._addend(numel, gen, p.dtype, p.device, a, reuse=False)
                if group_p and (group["n"] + numel > budget or s != group["s"] or group_p[0].device != p.device):
                    flush()
                group_p.append(p.view(-1))
                group_t.append(t)
                group["n"] += numel
                group["s"] = s
                continue
            flat = p.view(-1)
            for start in range(0, numel, chunk):
                n = min(chunk, numel - start)
                t, s = self._addend(n, gen, p.dtype, p.device, a, reuse=n >= SCRATCH_MIN)
                flat[start : start + n].add_(t, alpha=s)
        flush()


class Gaussian(_ChunkedIID):
    """``z ~ N(0, I)``; ``E<g,z>z = g`` (Nesterov & Spokoiny 2017, Eq. 25; §5.1).

    Each chunk is ``Tensor.normal_`` on the tensor's generator: the numbers of ``torch.randn(n, generator=...)``,
    written by a sweep into a reused buffer."""

    name = "gaussian"

    def scale(self, dim: int) -> float:
        return 1.0

    def _draw(self, n, gen, dtype, device, reuse):
        out = _scratch(n, dtype, device) if reuse else torch.empty(n, dtype=dtype, device=device)
        return out.normal_(generator=gen)


def _random_words(n_words: int, gen: torch.Generator, device: torch.device | str, reuse: bool) -> torch.Tensor:
    """``n_words`` uniform 64-bit words as int64: ``random_`` over the full int64 range, one generator call
    per word, where ``randint(0, 256, dtype=uint8)`` spends one call per byte."""
    w = _scratch(n_words, torch.int64, device) if reuse else torch.empty(n_words, dtype=torch.int64, device=device)
    return w.random_(-(2**63), None, generator=gen)


def _table_lookup(
    table: torch.Tensor, n: int, bits: int, gen: torch.Generator, reuse: bool, row: int = 1
) -> torch.Tensor:
    """``n`` entries read from ``table`` (``2^bits`` rows of ``row`` values) at uniform random rows.

    The row indices are the unsigned ``bits``-bit pieces (8 or 16) of :func:`_random_words`, in memory
    order (little-endian byte order on every device torch supports); ``ceil(n / row)`` indices are used."""
    unit = {8: torch.uint8, 16: torch.uint16}[bits]
    per_word = 64 // bits * row
    pieces = _random_words((n + per_word - 1) // per_word, gen, table.device, reuse).view(unit)
    if reuse:
        idx = _scratch(pieces.numel(), torch.int32, table.device).copy_(pieces)
        out = _scratch(pieces.numel() * row, table.dtype, table.device).view(pieces.numel(), *table.shape[1:])
        return torch.index_select(table, 0, idx, out=out).view(-1)[:n]
    return table.index_select(0, pieces.int()).view(-1)[:n]


def _scaled(table: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """``alpha * table`` (``alpha * z`` entry by entry, rounded once in the table's dtype)."""
    return table * (alpha.to(table.dtype) if isinstance(alpha, torch.Tensor) else float(alpha))


@lru_cache(maxsize=32)
def _sign_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(256, 8)`` table: row ``b`` holds ``2 bit_k(b) - 1`` for the 8 bits ``k`` of byte ``b`` (LSB first)."""
    bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8).unsqueeze(0)) & 1
    return (2 * bits - 1).to(dtype=dtype, device=device)


class Rademacher(_ChunkedIID):
    """``z`` uniform on ``{-1, +1}^d``; ``E zz^T = I`` and ``||z||^2 = d`` exactly.

    Fast path (the cheap option for CPUs, where a Gaussian entry costs about 3.5 ns on one thread): a
    chunk of ``n`` entries draws ``ceil(n / 64)`` uniform 64-bit words (:func:`_random_words`); each of
    their bytes gives 8 signs through a 256 x 8 sign table (bit ``k`` of byte ``b`` is entry ``8b + k``),
    so a sweep costs one generator call per 64 entries, one table gather and one add. For an update
    the table is scaled by ``alpha`` first (``alpha * z`` is exact for ``z = +-1``; it is formed in fp32
    for half-precision tensors, so the add rounds once as ``add_(z, alpha=...)`` does). Rademacher
    directions are FZOO's choice (unbiased, ``scale = 1``, the same ``E zz^T = I`` as Gaussian;
    ``E z_i^4 = 1`` instead of 3, which lowers the estimator variance).
    """

    name = "rademacher"

    def scale(self, dim: int) -> float:
        return 1.0

    def chunk_size(self, device: torch.device) -> int:
        size = draw_chunk(device)
        return min(size, TABLE_CPU_CHUNK) if _device(device).type == "cpu" else size

    def _draw(self, n, gen, dtype, device, reuse):
        return _table_lookup(_sign_table(dtype, _device(device)), n, 8, gen, reuse, row=8)

    def _addend(self, n, gen, dtype, device, alpha, reuse):
        table = _scaled(_sign_table(_wide(dtype), _device(device)), alpha)
        return _table_lookup(table, n, 8, gen, reuse, row=8), 1.0


@lru_cache(maxsize=32)
def _normal_quantile_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 65,536 normal quantiles ``Phi^{-1}((k + 1/2) / 2^16)``, divided by their root mean square.

    Built in float64 from the upper half and mirrored, so ``t[2^16 - 1 - k] = -t[k]`` holds exactly (also
    after rounding to ``dtype``): the mean is exactly 0, the mean square is 1 in float64 (within 1e-9 after
    rounding to fp32), the 4th moment is 2.99925 and ``max |t| = 4.325``."""
    k = torch.arange(1 << 15, dtype=torch.float64)
    upper = torch.special.ndtri(0.5 + (k + 0.5) / (1 << 16))
    table = torch.cat([-upper.flip(0), upper])
    table = table / table.square().mean().sqrt()
    return table.to(dtype=dtype, device=device)


class QuantisedGaussian(_ChunkedIID):
    """i.i.d. entries uniform over the 65,536 normalised normal quantiles of :func:`_normal_quantile_table`.

    ``E z = 0`` and ``E zz^T = I`` (the table's mean square is 1), so ``scale = 1`` and the two-point
    estimator is unbiased like Gaussian's. The 4th moment is ``m4 = 2.99925`` (Gaussian: 3, Rademacher: 1),
    so with exact directional derivatives ``E||<g,z> z||^2 = (d - 1 + m4) ||g||^2``, just below Gaussian's
    ``(d + 2) ||g||^2``. It is not the Gaussian law: the smoothing identity of Nesterov & Spokoiny holds
    only approximately, and ``|z_i| <= 4.33``.

    Fast path: the four 16-bit pieces of each uniform 64-bit word (:func:`_random_words`) index the table.
    On one CPU thread a sweep costs 2.4 ns per parameter against 4.1 for Gaussian and 0.9 for Rademacher
    (``direction_sweeps_minilm.json`` in ``results/benchmarks``). Half-precision tensors use the rounded
    table (mean still exactly 0, mean square 1 within 4e-6).
    """

    name = "qgaussian"

    def scale(self, dim: int) -> float:
        return 1.0

    def chunk_size(self, device: torch.device) -> int:
        size = draw_chunk(device)
        return min(size, TABLE_CPU_CHUNK) if _device(device).type == "cpu" else size

    def _draw(self, n, gen, dtype, device, reuse):
        return _table_lookup(_normal_quantile_table(dtype, _device(device)), n, 16, gen, reuse)


@lru_cache(maxsize=256)
def _gaussian_total_norm(shapes: Shapes, step_seed: int, j: int, device: str) -> float:
    gaussian = Gaussian()
    total = 0.0
    for i in range(len(shapes)):
        z = gaussian.tensor_direction(shapes, i, step_seed, j, torch.float32, torch.device(device))
        total += float(torch.sum(z.double() ** 2))
    return math.sqrt(total)


class Sphere(DirectionFamily):
    """``z = u / ||u||`` with ``u ~ N(0, I)`` over all tensors jointly: uniform on ``S^{d-1}``.

    The norm is taken over the concatenation of all tensors (one extra generation pass,
    cached per seed), so the direction is uniform on the whole sphere, not per block.
    Unbiased scale ``d``: ``E[d <g,s> s] = g`` (Flaxman et al. 2005; §5.10).
    """

    name = "sphere"

    def scale(self, dim: int) -> float:
        return float(dim)

    def typical_entry(self, dim: int) -> float:
        return 1.0 / math.sqrt(dim)

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        norm = _gaussian_total_norm(shapes, step_seed, j, str(device))
        z = Gaussian().tensor_direction(shapes, index, step_seed, j, torch.float32, device)
        return z.div_(norm).to(dtype)


def _coordinate_location(shapes: Shapes, step_seed: int, j: int) -> tuple[int, int]:
    """The (tensor, flat offset) of the coordinate drawn for direction ``j``."""
    dim = sum(_numel(s) for s in shapes)
    gen = draw_generator(_direction_seed(step_seed, j), _JOINT_INDEX)
    flat = int(torch.randint(0, dim, (1,), generator=gen))
    for i, s in enumerate(shapes):
        n = _numel(s)
        if flat < n:
            return i, flat
        flat -= n
    raise AssertionError("unreachable: offset beyond the total size")


class Coordinate(DirectionFamily):
    """``z = e_i`` with ``i`` uniform over all entries of all tensors (§5.14, 3.4).

    ``d * (f(x + r e_i) - f(x - r e_i)) / (2r) * e_i`` is unbiased for the central
    coordinate finite-difference vector. :meth:`add_` touches a single entry.
    """

    name = "coordinate"

    def scale(self, dim: int) -> float:
        return float(dim)

    def location(self, shapes: Shapes, step_seed: int, j: int) -> tuple[int, int]:
        return _coordinate_location(shapes, step_seed, j)

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        z = torch.zeros(shapes[index], dtype=dtype, device=device)
        i, offset = _coordinate_location(shapes, step_seed, j)
        if i == index:
            z.view(-1)[offset] = 1
        return z

    def add_(self, tensors, step_seed, j, alpha):
        i, offset = _coordinate_location(_shapes(tensors), step_seed, j)
        a = _as_alphas(alpha, len(tensors))[i]
        if _is_zero(a):
            return
        flat = tensors[i].view(-1)
        flat[offset] += a.to(flat.dtype) if isinstance(a, torch.Tensor) else a


def block_selection(
    shape: torch.Size, fraction: float, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Random block of a tensor: (row indices, column indices or None, inclusion probability).

    Matrices (and higher-rank tensors viewed as ``(shape[0], -1)``) get a random subset of
    ``ceil(fraction * rows)`` rows times ``ceil(fraction * cols)`` columns, as JAGUAR's
    public code samples blocks (``docs/theory.md`` §6.4); vectors get
    ``ceil(fraction * n)`` entries. The inclusion probability ``p`` of an entry is the
    product of the row and column fractions actually drawn.
    """
    if len(shape) >= 2:
        rows, cols = shape[0], _numel(shape) // shape[0]
        k_r, k_c = max(1, math.ceil(fraction * rows)), max(1, math.ceil(fraction * cols))
        r = torch.randperm(rows, generator=generator, device=device)[:k_r]
        c = torch.randperm(cols, generator=generator, device=device)[:k_c]
        return r, c, (k_r / rows) * (k_c / cols)
    n = _numel(shape)
    k = max(1, math.ceil(fraction * n))
    return torch.randperm(n, generator=generator, device=device)[:k], None, k / n


class Block(DirectionFamily):
    """Rademacher signs on a random block of every tensor, scaled by ``1/sqrt(p)``.

    With ``p`` the inclusion probability of an entry of that tensor
    (:func:`block_selection`), ``E zz^T = I`` exactly, so the scale is 1. Only the block is
    touched by :meth:`add_`.
    """

    name = "block"

    def __init__(self, fraction: float = 0.1) -> None:
        if not (0.0 < fraction <= 1.0) or not math.isfinite(fraction):
            raise ValueError(f"block fraction must lie in (0, 1], got {fraction!r}")
        self.fraction = fraction

    def scale(self, dim: int) -> float:
        return 1.0

    def typical_entry(self, dim: int) -> float:
        return 1.0 / math.sqrt(self.fraction)

    def _block(self, shape, index, step_seed, j, dtype, device):
        gen = draw_generator(_direction_seed(step_seed, j), index, device)
        rows, cols, p = block_selection(shape, self.fraction, gen, device)
        size = (rows.numel(), cols.numel()) if cols is not None else (rows.numel(),)
        signs = torch.randint(0, 2, size, generator=gen, device=device, dtype=torch.int8)
        values = signs.to(dtype).mul_(2).sub_(1).mul_(1.0 / math.sqrt(p))
        return rows, cols, values

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        shape = shapes[index]
        rows, cols, values = self._block(shape, index, step_seed, j, dtype, device)
        if cols is None:
            z = torch.zeros(_numel(shape), dtype=dtype, device=device)
            z[rows] = values
        else:
            z = torch.zeros(shape[0], _numel(shape) // shape[0], dtype=dtype, device=device)
            z[rows.unsqueeze(1), cols.unsqueeze(0)] = values
        return z.view(shape)

    def add_(self, tensors, step_seed, j, alpha):
        shapes = _shapes(tensors)
        for i, (p, a) in enumerate(zip(tensors, _as_alphas(alpha, len(tensors)), strict=False)):
            if _is_zero(a):
                continue
            rows, cols, values = self._block(shapes[i], i, step_seed, j, p.dtype, p.device)
            values = values.mul_(a.to(values.dtype)) if isinstance(a, torch.Tensor) else values.mul_(float(a))
            if cols is None:
                p.view(-1).index_add_(0, rows, values)
            else:
                view = p.view(p.shape[0], -1)
                view[rows.unsqueeze(1), cols.unsqueeze(0)] += values

    def __repr__(self) -> str:
        return f"Block(fraction={self.fraction})"


@lru_cache(maxsize=16)
def _orthonormal_frame(shapes: Shapes, step_seed: int, q: int, device: str) -> torch.Tensor:
    """Haar-distributed ``d x q`` frame: QR of a Gaussian matrix with the sign fix of R's diagonal."""
    dev = torch.device(device)
    blocks = [
        torch.randn(_numel(s), q, generator=tensor_generator(step_seed, i, dev), dtype=torch.float64, device=dev)
        for i, s in enumerate(shapes)
    ]
    gaussian = torch.cat(blocks, dim=0)
    qmat, rmat = torch.linalg.qr(gaussian)
    return qmat * torch.sign(torch.diagonal(rmat)).unsqueeze(0)


class Orthonormal(DirectionFamily):
    """Column ``j`` of a Haar-random orthonormal ``d x q`` frame ``V`` (``V^T V = I_q``).

    ``(d/q) V V^T g`` is unbiased with ``E||.||^2 = (d/q)||g||^2`` (§5.12); the frame is
    drawn jointly over all tensors and materialised (``d * q`` float64 numbers), so this
    family is meant for synthetic problems, not LLMs.
    """

    name = "orthonormal"

    def __init__(self, q: int) -> None:
        if q < 1:
            raise ValueError(f"orthonormal frame size q must be >= 1, got {q!r}")
        self.q = q

    def scale(self, dim: int) -> float:
        return float(dim)

    def typical_entry(self, dim: int) -> float:
        return 1.0 / math.sqrt(dim)

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        dim = sum(_numel(s) for s in shapes)
        if self.q > dim:
            raise ValueError(f"orthonormal frame size q={self.q} exceeds the dimension {dim}")
        if not 0 <= j < self.q:
            raise ValueError(f"direction index {j} outside the frame of size q={self.q}")
        frame = _orthonormal_frame(shapes, step_seed, self.q, str(device))
        start = sum(_numel(s) for s in shapes[:index])
        column = frame[start : start + _numel(shapes[index]), j]
        return column.to(dtype).reshape(shapes[index]).clone()

    def __repr__(self) -> str:
        return f"Orthonormal(q={self.q})"


class LowRank(DirectionFamily):
    """``Z = U V^T / sqrt(r)`` for every tensor with >= 2 dims (viewed as ``(shape[0], -1)``).

    ``U, V`` have i.i.d. N(0, 1) entries, so ``E[Z_ab Z_a'b'] = delta_aa' delta_bb'`` and the
    scale is 1; vectors get Gaussian directions. Rank ``r`` is capped by the matrix size.
    """

    name = "lowrank"

    def __init__(self, rank: int = 1) -> None:
        if rank < 1:
            raise ValueError(f"low-rank direction rank must be >= 1, got {rank!r}")
        self.rank = rank

    def scale(self, dim: int) -> float:
        return 1.0

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        shape = shapes[index]
        gen = draw_generator(_direction_seed(step_seed, j), index, device)
        if len(shape) < 2:
            return torch.randn(shape, generator=gen, dtype=dtype, device=device)
        rows, cols = shape[0], _numel(shape) // shape[0]
        u = torch.randn(rows, self.rank, generator=gen, dtype=dtype, device=device)
        v = torch.randn(cols, self.rank, generator=gen, dtype=dtype, device=device)
        return (u @ v.T).mul_(1.0 / math.sqrt(self.rank)).view(shape)

    def __repr__(self) -> str:
        return f"LowRank(rank={self.rank})"


_FAMILIES = {
    "gaussian": Gaussian,
    "rademacher": Rademacher,
    "qgaussian": QuantisedGaussian,
    "sphere": Sphere,
    "coordinate": Coordinate,
    "block": Block,
    "orthonormal": Orthonormal,
    "lowrank": LowRank,
}


def get_directions(spec: str | DirectionFamily, **options: float | int) -> DirectionFamily:
    """A direction family from its name (``gaussian``, ``rademacher``, ``qgaussian``, ``sphere``,
    ``coordinate``, ``block``, ``orthonormal``, ``lowrank``) or an instance (returned as is)."""
    if isinstance(spec, DirectionFamily):
        return spec
    try:
        cls = _FAMILIES[spec]
    except KeyError:
        raise ValueError(f"unknown direction family {spec!r}; choose one of {sorted(_FAMILIES)}") from None
    return cls(**options)
