"""Small private helpers shared by the problem classes: input checks, seeded draws.

Every random draw of the package comes from a private ``torch.Generator`` built with
:func:`zotheory.directions.tensor_generator` from ``(seed, stream)``, where ``stream`` names
what is drawn (the optimum, the start, a rotation, the data, a stochastic sample). Changing
one option of a problem therefore never shifts the draws of an unrelated part.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch

from zotheory.directions import mix_seed, tensor_generator

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def stream(name: str) -> int:
    """A fixed integer tag for a named random stream (CRC32 of the name)."""
    return zlib.crc32(name.encode("utf-8"))


def generator(seed: int, name: str, *extra: int) -> torch.Generator:
    """Private CPU generator for the stream ``name`` of a problem built with ``seed``."""
    index = stream(name) if not extra else mix_seed(stream(name), *extra)
    return tensor_generator(seed, index)


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    return int(value)


def check_float(
    value: object,
    name: str,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    finite: bool = True,
) -> float:
    """Return ``value`` as a float, or raise naming the bad value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value.item())
        else:
            raise TypeError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if math.isnan(out) or (finite and math.isinf(out)):
        raise ValueError(f"{name} must be finite, got {name}={out}")
    if positive and not out > 0:
        raise ValueError(f"{name} must be > 0, got {name}={out}")
    if nonnegative and not out >= 0:
        raise ValueError(f"{name} must be >= 0, got {name}={out}")
    return out


def check_dtype(dtype: object) -> torch.dtype:
    """Accept float32 (default of the package) and float64; anything else is an error."""
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got dtype={dtype!r}")
    return dtype


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """The entry of ``choices`` equal to ``value``; anything else is an error naming the choices."""
    for choice in choices:
        if value == choice:
            return choice
    raise ValueError(f"{name} must be one of {list(choices)}, got {name}={value!r}")


def check_spectrum(values: object, name: str, length: int | None = None) -> torch.Tensor:
    """A 1-D float64 tensor of finite, non-negative values with a positive maximum."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten().clone()
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if length is not None and t.numel() != length:
        raise ValueError(f"{name} must have {length} entries, got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {name}={t.tolist()[:8]}...")
    if bool((t < 0).any()):
        bad = float(t.min())
        raise ValueError(f"{name} must be >= 0 entrywise, got a value {bad}")
    if not float(t.max()) > 0:
        raise ValueError(f"{name} must have a positive entry, got max {float(t.max())}")
    return t


def haar_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-distributed ``n x n`` orthogonal matrix (float64).

    QR of a Gaussian matrix with the signs of ``diag(R)`` moved into ``Q``; without that
    sign fix the law of ``Q`` is not Haar (Mezzadri 2007, "How to generate random
    matrices from the classical compact groups", Notices AMS 54(5), section 5).
    """
    g = torch.randn(n, n, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    s = torch.sign(torch.diagonal(r))
    s[s == 0] = 1.0
    return q * s


def power_law(n: int, top: float, power: float) -> torch.Tensor:
    """``top * i^(-power)`` for ``i = 1..n`` (float64): a few dominant entries, a flat tail."""
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return top * i.pow(-power)


def flat_band(n: int, top: float) -> torch.Tensor:
    """``n`` values evenly spaced in ``[top/2, top]``, largest first (condition number 2)."""
    if n == 1:
        return torch.tensor([top], dtype=torch.float64)
    return torch.linspace(top, top / 2, n, dtype=torch.float64)
