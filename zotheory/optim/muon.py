r"""ZO-Muon: Newton–Schulz orthogonalisation of a zeroth-order estimate, and its matrix-efficient variant.

Two methods from the JAGUAR paper's appendix (Petrov et al., arXiv 2506.04430; the early PDF in
``intsystems/ZO-LLM-FineTuning`` @ 0da8dd2, Appendix A; ``docs/theory.md`` §3.9):

* :class:`ZOMuon` (App. A.1, Alg. 3): a two-point estimate ``G = (f(W + r E) - f(W - r E)) / (2r) E`` with
  Gaussian ``E``, then ``W <- W - lr NS(G)`` per matrix. We add an optional EMA momentum
  ``M <- beta M + (1 - beta) G`` before the orthogonalisation (``beta = 0``, the default, is Alg. 3).
* :class:`MatrixEfficientZOMuon` (App. A.2, Alg. 4): draw ``E = U_E Sigma_E V_E^T`` from its factors, so the
  polar factor of the estimate is known without any Newton–Schulz: ``G = c E`` with the scalar
  ``c = (f(W + r E) - f(W - r E)) / (2r)``, hence ``polar(G) = sign(c) U_E V_E^T`` exactly (paper Eqs. (5)–(7))
  and ``W <- W - lr sign(c) U_E V_E^T``. The directions are the :class:`SemiOrthogonal` family.

Which tensors are orthogonalised is explicit: every parameter group carries an ``update`` rule
(:data:`UPDATE_RULES`), and :func:`muon_param_groups` builds the usual split (hidden matrices -> ``"muon"``;
embeddings, the LM head, biases and LayerNorm -> ``"sign"``). The JAGUAR-Muon failure on full fine-tuning
(72.5% on SST-2) was blamed by its authors on the non-matrix parameters (``docs/theory.md`` §6.3, §6.6).

Update rules (a direction ``D`` with ``x <- x - lr D``; each is minus a unit-ball LMO of ``lmo.py``, §4
of ``docs/theory.md``):

=========  ==========================================================  ==========================
rule        ``D`` for the (momentum of the) estimate ``M``              LMO
=========  ==========================================================  ==========================
``muon``    ``NS(M)`` (Newton–Schulz; ``~ U V^T`` for ``M = U S V^T``)  spectral ball (approximate)
``sign``    ``sign(M)``                                                 max-norm ball
``l2``      ``M / ||M||_F`` (0 for ``M = 0``)                           Euclidean ball
``sgd``     ``M`` (no normalisation; ZO-Muon's code path for vectors)   none
=========  ==========================================================  ==========================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Unpack

import torch
from torch import Tensor, nn

from zotheory.directions import DirectionFamily, draw_generator, mix_seed
from zotheory.estimators import ZOEstimate
from zotheory.lmo import MUON_QUINTIC, l2_lmo, linf_lmo, muon_shape_scale, newton_schulz, newton_schulz_batched
from zotheory.optim.base import ZOOptimizer, _state_dtype, validate_unit_interval
from zotheory.optim.config import EstimatorOptions

__all__ = [
    "EMBEDDING_NAME_PARTS",
    "NS_BATCH_BUDGET",
    "NS_DTYPES",
    "apply_update_rules_",
    "ns_compute_dtype",
    "UPDATE_RULES",
    "MatrixEfficientZOMuon",
    "SemiOrthogonal",
    "ZOMuon",
    "ema_",
    "is_hidden_matrix",
    "muon_param_groups",
    "update_direction",
    "validate_ns",
    "validate_ns_dtype",
    "validate_update_group",
]

UPDATE_RULES: tuple[str, ...] = ("muon", "sign", "l2", "sgd")

#: Name fragments of tensors that are matrices but not hidden layers: token / position embeddings and the
#: LM head (often tied to the embedding). Muon (KellerJordan/Muon README) and JAGUAR's v1 code keep them off
#: the orthogonalised path; lower-case substring match on the parameter name.
EMBEDDING_NAME_PARTS: tuple[str, ...] = ("embed", "wte", "wpe", "lm_head")


# ---------------------------------------------------------------------------------------------- pure maths
def ema_(state: dict[str, Any], key: str, g: Tensor, beta: float) -> Tensor:
    """``m <- beta m + (1 - beta) g`` in ``state[key]`` (created as zeros); ``beta = 0`` keeps no buffer
    and returns ``g`` itself."""
    if beta == 0:
        return g
    buf = state.get(key)
    if buf is None:
        buf = state[key] = torch.zeros_like(g)
    return buf.mul_(beta).add_(g, alpha=1.0 - beta)


def update_direction(
    rule: str,
    m: Tensor,
    *,
    ns_coefficients: Sequence[float] = MUON_QUINTIC,
    ns_steps: int = 5,
    shape_scale: bool = False,
) -> Tensor:
    """The direction ``D`` of ``x <- x - lr D`` for an update rule (module table).

    ``muon``: ``newton_schulz(M, coefficients, steps)``, times ``max(1, rows/cols)^(1/2)`` when
    ``shape_scale`` (Muon's post-scaling, §5.33; JAGUAR's code does not use it). ``sign``:
    ``sign(M) = -lmo_inf(M)``. ``l2``: ``M/||M|| = -lmo_2(M)``. ``sgd``: ``M``.
    """
    if rule == "muon":
        d = newton_schulz(m, ns_coefficients, ns_steps)
        return d.mul_(muon_shape_scale(m.shape)) if shape_scale else d
    if rule == "sign":
        return linf_lmo(m).neg_()
    if rule == "l2":
        return l2_lmo(m).neg_()
    if rule == "sgd":
        return m
    raise ValueError(f"unknown update rule {rule!r}; choose one of {list(UPDATE_RULES)}")


#: Newton–Schulz arithmetic (group key ``ns_dtype``): ``"auto"`` is bf16 on a GPU (Muon's choice: the
#: quintic only needs to land in its invariant band, which bf16 products do) and the work dtype elsewhere
#: (fp64 for fp64 parameters, fp32 otherwise, so CPU results match the dense references to rounding).
NS_DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
    "fp64": torch.float64,
}

#: Entries of one stack of equal-shape matrices orthogonalised together (64 MiB of fp32 per shape at most:
#: the estimates of a stack are held until it is full, so this bounds the extra memory of a step).
NS_BATCH_BUDGET = 1 << 24


def ns_compute_dtype(ns_dtype: str, m: Tensor) -> torch.dtype:
    """The dtype Newton–Schulz runs in for a group's ``ns_dtype`` (:data:`NS_DTYPES`) and a tensor ``m``."""
    chosen = NS_DTYPES[ns_dtype]
    if chosen is not None:
        return chosen
    if m.device.type == "cuda":
        return torch.bfloat16
    return torch.float64 if m.dtype == torch.float64 else torch.float32


def apply_update_rules_(items: Iterable[tuple[Tensor, Mapping[str, Any], Tensor]], defaults: Mapping[str, Any]) -> None:
    """``p <- p - lr D(m)`` for every ``(p, group, m)``, ``D`` the group's ``update`` rule (:func:`update_direction`).

    ``muon`` tensors of equal shape (and equal Newton–Schulz settings, device and dtype) are stacked, up to
    :data:`NS_BATCH_BUDGET` entries, and orthogonalised by one :func:`zotheory.lmo.newton_schulz_batched`
    chain; the others are updated one by one as they come (``items`` may be a generator, so only the open
    stacks are held in memory). ``defaults`` fills the keys a group lacks (``update``,
    ``ns_coefficients``, ``ns_steps``, ``shape_scale``, ``ns_dtype``).
    """

    def opt(group: Mapping[str, Any], key: str) -> Any:
        return group.get(key, defaults.get(key))

    batches: dict[tuple[Any, ...], list[tuple[Tensor, Mapping[str, Any], Tensor]]] = {}
    for p, group, m in items:
        rule = opt(group, "update")
        if rule != "muon":
            d = update_direction(rule, m)
            p.add_(d.to(p.dtype), alpha=-group["lr"])
            continue
        matrix = m.reshape(m.shape[0], -1) if m.dim() >= 2 else m
        key = (
            tuple(matrix.shape),
            tuple(opt(group, "ns_coefficients")),
            opt(group, "ns_steps"),
            ns_compute_dtype(opt(group, "ns_dtype") or "auto", m),
            m.dtype,
            m.device,
        )
        batch = batches.setdefault(key, [])
        batch.append((p, group, m))
        if len(batch) * matrix.numel() >= NS_BATCH_BUDGET:
            _orthogonalise_batch_(batches.pop(key), key, opt)
    for key, batch in batches.items():
        _orthogonalise_batch_(batch, key, opt)


def _orthogonalise_batch_(
    batch: list[tuple[Tensor, Mapping[str, Any], Tensor]], key: tuple[Any, ...], opt: Any
) -> None:
    shape, coeffs, steps, compute_dtype = key[:4]
    stack = torch.stack([m.reshape(shape) for _, _, m in batch])
    d = newton_schulz_batched(stack, coeffs, steps, compute_dtype=compute_dtype)
    for (p, group, m), d_i in zip(batch, d, strict=False):
        if opt(group, "shape_scale"):
            d_i = d_i * muon_shape_scale(m.shape)
        p.add_(d_i.reshape(p.shape).to(p.dtype), alpha=-group["lr"])


def validate_ns_dtype(ns_dtype: str) -> str:
    """``ns_dtype`` itself if it is one of :data:`NS_DTYPES` (else a ``ValueError`` naming it)."""
    if ns_dtype not in NS_DTYPES:
        raise ValueError(f"unknown ns_dtype {ns_dtype!r}; choose one of {list(NS_DTYPES)}")
    return ns_dtype


# ---------------------------------------------------------------------------------------------- validation
def validate_ns(coefficients: Sequence[float], steps: int) -> tuple[tuple[float, ...], int]:
    """Newton–Schulz settings: a non-empty sequence of finite coefficients and an integer ``steps >= 0``."""
    try:
        coeffs = tuple(float(c) for c in coefficients)
    except (TypeError, ValueError):
        raise ValueError(f"ns_coefficients must be a sequence of numbers, got {coefficients!r}") from None
    if not coeffs or not all(math.isfinite(c) for c in coeffs):
        raise ValueError(f"ns_coefficients must be non-empty and finite, got {coefficients!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"ns_steps must be an integer >= 0, got {steps!r}")
    return coeffs, steps


def validate_update_group(group: Mapping[str, Any], rules: Sequence[str] = UPDATE_RULES) -> None:
    """The group's ``update`` rule is known, and ``muon`` groups hold only tensors with >= 2 dims."""
    rule = group["update"]
    if rule not in rules:
        raise ValueError(f"unknown update rule {rule!r} in a parameter group; choose one of {list(rules)}")
    if rule == "muon":
        names = group.get("param_names")
        for k, p in enumerate(group["params"]):
            if p.dim() < 2:
                name = names[k] if names is not None else f"tensor {k} of the group"
                raise ValueError(
                    f"update='muon' needs matrices, but {name} has shape {tuple(p.shape)}; route vectors "
                    f"(biases, LayerNorm) to 'sign'/'l2'/'sgd', e.g. with muon_param_groups()"
                )


# ---------------------------------------------------------------------------------------------- routing
def is_hidden_matrix(name: str, p: Tensor, max_rows: int | None = None) -> bool:
    """The routing rule of :func:`muon_param_groups`: a tensor is a *hidden matrix* iff it has >= 2 dims
    (conv kernels use the ``(shape[0], -1)`` matrix view), its name contains none of
    :data:`EMBEDDING_NAME_PARTS`, and (if ``max_rows`` is given) it has at most ``max_rows`` rows —
    JAGUAR's v1 code used ``size(0) < 10000`` to keep OPT's 50272-row tied embedding off Newton–Schulz."""
    if p.dim() < 2:
        return False
    lowered = name.lower()
    if any(part in lowered for part in EMBEDDING_NAME_PARTS):
        return False
    return max_rows is None or p.shape[0] <= max_rows


def muon_param_groups(
    model_or_params: nn.Module | Iterable[Tensor] | Iterable[tuple[str, Tensor]],
    *,
    hidden: Any = "muon",
    other: Any = "sign",
    key: str = "update",
    max_rows: int | None = None,
    hidden_options: Mapping[str, Any] | None = None,
    other_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Split parameters into hidden matrices and the rest (rule: :func:`is_hidden_matrix`).

    Returns up to two parameter groups ``[{"params": hidden, key: hidden}, {"params": rest, key: other}]``
    (empty groups are left out), with any extra per-group options merged in. With a module, only
    parameters with ``requires_grad`` are taken, with their names (so MeZO's weight-decay rule and error
    messages can use them); with a list of tensors, names are ``param_i`` and the split is by shape alone.
    Use ``key="norm", hidden="spectral", other="linf"`` for :class:`~zotheory.optim.zolmo.ZOLMO`.
    """
    if isinstance(model_or_params, nn.Module):
        items: list[Any] = [(n, p) for n, p in model_or_params.named_parameters() if p.requires_grad]
        named = True
    else:
        items = list(model_or_params)
        if items and isinstance(items[0], dict):
            raise ValueError("muon_param_groups expects parameters, not parameter groups")
        named = bool(items) and isinstance(items[0], tuple)
    hidden_items: list[Any] = []
    other_items: list[Any] = []
    for k, item in enumerate(items):
        name, p = item if named else (f"param_{k}", item)
        (hidden_items if is_hidden_matrix(name, p, max_rows) else other_items).append(item)
    groups = []
    if hidden_items:
        groups.append({"params": hidden_items, key: hidden, **dict(hidden_options or {})})
    if other_items:
        groups.append({"params": other_items, key: other, **dict(other_options or {})})
    return groups


# ---------------------------------------------------------------------------------------------- ZO-Muon
class ZOMuon(ZOOptimizer):
    r"""ZO-Muon (JAGUAR paper, arXiv 2506.04430, App. A.1, Alg. 3), with optional EMA momentum.

    .. math::
        G_t = \frac1q\sum_{j<q}\frac{f(W_t + rE_j) - f(W_t - rE_j)}{2r}E_j,\quad
        M_t = \beta M_{t-1} + (1-\beta)G_t,\quad W_{t+1} = W_t - \eta\,\mathrm{NS}(M_t)

    per tensor of a ``"muon"`` group (``beta = 0``: ``M_t = G_t``, no buffer, Alg. 3); other groups use
    their ``update`` rule (module table). ``NS`` is :func:`zotheory.lmo.newton_schulz` with
    ``ns_coefficients`` / ``ns_steps``: Muon's quintic with 5 steps by default (ZO-Muon v2 code; the v1 code
    used 10, the paper prints the cubic with ``K = 10``, :data:`zotheory.lmo.CUBIC`). Since NS is invariant to
    the scale of its input, with ``q = 1`` and no momentum ``NS(G) = sign(c) NS(E)``.

    Matrices of equal shape are orthogonalised together, one batched Newton–Schulz chain per stack
    (:func:`apply_update_rules_`), in bf16 on a GPU by default (``ns_dtype``, :data:`NS_DTYPES`).
    Memory: the dense estimates of the open stacks (at most :data:`NS_BATCH_BUDGET` entries per shape) plus,
    with ``momentum > 0``, one buffer of parameter size (fp32 for half-precision parameters).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        momentum: float = 0.0,
        update: str = "muon",
        ns_coefficients: Sequence[float] = MUON_QUINTIC,
        ns_steps: int = 5,
        shape_scale: bool = False,
        ns_dtype: str = "auto",
        **options: Unpack[EstimatorOptions],
    ) -> None:
        coeffs, steps = validate_ns(ns_coefficients, ns_steps)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            update=update,
            ns_coefficients=coeffs,
            ns_steps=steps,
            shape_scale=shape_scale,
            ns_dtype=validate_ns_dtype(ns_dtype),
        )
        super().__init__(
            params,
            defaults,
            **options,
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        validate_unit_interval("momentum", group["momentum"])
        group["ns_coefficients"], group["ns_steps"] = validate_ns(group["ns_coefficients"], group["ns_steps"])
        validate_update_group(group)
        validate_ns_dtype(group["ns_dtype"])

    def _update(self, est: ZOEstimate) -> None:
        items = (
            (p, group, ema_(self.state[p], "momentum_buffer", g, group["momentum"]))
            for _, p, group, g in self.dense_estimates(est)
        )
        apply_update_rules_(items, self.defaults)


# ---------------------------------------------------------------------------------------------- directions
def _haar_frame(rows: int, cols: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A ``rows x cols`` matrix with orthonormal columns, Haar-distributed (``cols <= rows``): QR of a
    Gaussian matrix with the signs of ``R``'s diagonal moved into ``Q`` (Mezzadri 2007)."""
    a = torch.randn(rows, cols, generator=gen, dtype=dtype, device=device)
    # geqrf + householder_product is the reduced QR (``torch.linalg.qr`` is ~1000x slower on small
    # matrices on a loaded multi-threaded CPU); R's diagonal is the diagonal of the geqrf output
    packed, tau = torch.geqrf(a)
    qmat = torch.linalg.householder_product(packed, tau)
    signs = torch.sign(torch.diagonal(packed))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return qmat * signs.unsqueeze(0)


class SemiOrthogonal(DirectionFamily):
    r"""Matrix directions drawn from their SVD factors, ``E = U \Sigma V^T`` (JAGUAR paper, Alg. 4, line 4).

    For a tensor viewed as an ``m x n`` matrix with ``k = min(m, n)``: ``U`` (``m x k``) and ``V`` (``n x k``)
    are independent Haar frames and ``Sigma = diag(s)``:

    * ``spectrum="identity"`` (default): ``s = sqrt(max(m, n))``, so ``E = sqrt(max(m, n)) U V^T`` is a scaled
      random partial isometry with ``||E||_F^2 = m n`` exactly;
    * ``spectrum="gaussian"``: ``s`` are the singular values of an independent ``m x n`` Gaussian matrix. A
      Gaussian matrix is ``U \Sigma V^T`` with Haar ``U, V`` independent of ``\Sigma`` (bi-orthogonal
      invariance), so ``E`` is then exactly ``N(0, 1)``-distributed: ZO-Muon's Gaussian direction with its
      SVD known (costs one SVD of a Gaussian matrix per step; meant for synthetic problems).

    In both cases ``E`` is invariant in law under ``E -> P E Q`` for orthogonal ``P, Q``, which forces
    ``E[vec(E) vec(E)^T] = (E||E||_F^2 / (m n)) I = I``: the scale is 1, as for Gaussian directions
    (``directions.py`` convention). Tensors with fewer than 2 dims get Gaussian directions.
    :meth:`polar` returns the polar factor ``U V^T`` (the Muon/spectral-LMO direction of ``E``, §5.29)
    without any Newton–Schulz or SVD. Factors are computed in float32 (float64 for float64 tensors) and
    cast, so a half-precision direction is the rounding of the float32 one.
    """

    name = "semiorthogonal"
    SPECTRA: tuple[str, ...] = ("identity", "gaussian")

    def __init__(self, spectrum: str = "identity") -> None:
        if spectrum not in self.SPECTRA:
            raise ValueError(f"unknown spectrum {spectrum!r}; choose one of {list(self.SPECTRA)}")
        self.spectrum = spectrum
        # the factors of the last tensor asked for: a direction and its polar factor share them (two QRs, not four)
        self._last: tuple[Any, tuple[Tensor, Tensor, Tensor]] | None = None

    def scale(self, dim: int) -> float:
        return 1.0

    def factors(
        self, shapes: Sequence[torch.Size], index: int, step_seed: int, j: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(U, s, V)`` of tensor ``index`` (>= 2 dims) in the work dtype (float64 or float32); the last
        call's factors are kept and returned again for the same arguments (callers must not modify them)."""
        shape = shapes[index]
        if len(shape) < 2:
            raise ValueError(f"SemiOrthogonal.factors needs a matrix, got shape {tuple(shape)}")
        key = (tuple(shape), index, step_seed, j, dtype, device)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        self._last = (key, self._draw_factors(shape, index, step_seed, j, dtype, device))
        return self._last[1]

    def _draw_factors(
        self, shape: torch.Size, index: int, step_seed: int, j: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        work = torch.float64 if dtype == torch.float64 else torch.float32
        rows, cols = shape[0], math.prod(shape[1:])
        k = min(rows, cols)
        gen = draw_generator(mix_seed(step_seed, j), index, device)
        u = _haar_frame(rows, k, gen, work, device)
        v = _haar_frame(cols, k, gen, work, device)
        if self.spectrum == "identity":
            s = torch.full((k,), math.sqrt(max(rows, cols)), dtype=work, device=device)
        else:
            s = torch.linalg.svdvals(torch.randn(rows, cols, generator=gen, dtype=work, device=device))
        return u, s, v

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        shape = shapes[index]
        if len(shape) < 2:
            gen = draw_generator(mix_seed(step_seed, j), index, device)
            return torch.randn(shape, generator=gen, dtype=dtype, device=device)
        u, s, v = self.factors(shapes, index, step_seed, j, dtype, device)
        return ((u * s.unsqueeze(0)) @ v.T).to(dtype).reshape(shape)

    def polar(
        self, shapes: Sequence[torch.Size], index: int, step_seed: int, j: int, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """``U V^T`` of tensor ``index`` in the work dtype, shaped like the tensor (its polar factor)."""
        u, _, v = self.factors(shapes, index, step_seed, j, dtype, device)
        return (u @ v.T).reshape(shapes[index])

    def __repr__(self) -> str:
        return f"SemiOrthogonal(spectrum={self.spectrum!r})"


class MatrixEfficientZOMuon(ZOOptimizer):
    r"""Matrix-efficient ZO-Muon (JAGUAR paper, arXiv 2506.04430, App. A.2, Alg. 4).

    .. math::
        E_l = U_l\Sigma_l V_l^T\ (\text{per matrix, } :class:`SemiOrthogonal`),\quad
        c = \frac{f(W + rE) - f(W - rE)}{2r},\quad W_l \leftarrow W_l - \eta\,\mathrm{sign}(c)\,U_lV_l^T

    Since the estimate of every matrix is ``G_l = c E_l``, its polar factor (what Muon's Newton–Schulz
    approximates) is exactly ``sign(c) U_l V_l^T``: no orthogonalisation is computed, the factors are
    regenerated from the seed. This is the exact-polar version of :class:`ZOMuon` with ``q = 1`` and no
    momentum (with ``spectrum="gaussian"`` the directions even have ZO-Muon's Gaussian law). Momentum is not
    offered: a sum of estimates is no longer a multiple of one known ``E``. Non-matrix groups apply their
    ``update`` rule to ``c z`` (``sign``: ``sign(c z)``; ``sgd``: ``c z``; ``l2``: ``sign(c) z/||z||``).

    Memory: no state; per matrix the factors ``U, V`` (``(m + n) min(m, n)`` numbers) and one matrix of
    scratch. Cost: two thin QR factorisations per matrix and step (and an SVD for ``spectrum="gaussian"``).
    """

    fixed_options = frozenset({"q", "directions", "policy"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        update: str = "muon",
        shape_scale: bool = False,
        spectrum: str = "identity",
        **options: Unpack[EstimatorOptions],
    ) -> None:
        config = self.estimator_config(options, q=1, directions=SemiOrthogonal(spectrum))
        if config.scheme not in ("central", "forward"):
            raise ValueError(
                f"MatrixEfficientZOMuon needs a two-point scheme ('central' or 'forward'), got {config.scheme!r}"
            )
        super().__init__(params, dict(lr=lr, update=update, shape_scale=shape_scale), config=config)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        validate_update_group(group)

    def _update(self, est: ZOEstimate) -> None:
        family: SemiOrthogonal = self.directions  # type: ignore[assignment]
        shapes = tuple(p.shape for p in self.zo_params())
        c = est.coefficients[0]
        sign_c = torch.sign(c)
        for i, p, group, z in self.regenerated_directions(est):
            if group["update"] == "muon":
                polar = family.polar(shapes, i, est.step_seed, 0, p.dtype, p.device)
                if group["shape_scale"]:
                    polar.mul_(muon_shape_scale(p.shape))
                p.add_(polar.mul_(sign_c.to(polar.dtype)).to(p.dtype), alpha=-group["lr"])
            else:
                work = _state_dtype(p)
                g = z.to(work).mul_(c.to(work))
                p.add_(update_direction(group["update"], g).to(p.dtype), alpha=-group["lr"])
