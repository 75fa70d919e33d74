"""Atomic, weights-only, content-hashed checkpoints of a training run.

Writing. Every file is written through :mod:`zotheory.atomicio` (a temporary in the same
directory, ``fsync``, ``os.replace``): a crash or an exception at any point leaves the
previous file intact. A hard kill can leave a ``.<name>.*.tmp`` behind (never read); the
training loop deletes those at the next start of the same output folder. With
``keep_previous=True`` the file being replaced is kept as ``<stem>.prev<suffix>`` (a hard
link: no copy, but its disk space stays in use until the next save).

Integrity. ``torch.load`` does not verify the zip CRCs, so a flipped bit inside a tensor
loads silently. Every checkpoint therefore carries ``"sha256"``: the SHA-256 of a canonical
serialisation of its content (:func:`content_digest`: keys, types, dtypes, shapes and the
raw bytes of every tensor), recomputed and compared by :func:`load_checkpoint`. A mismatch
is a :class:`CheckpointError` that names the file and offers the previous checkpoint when
one exists and verifies.

Reading. Checkpoints hold only tensors and primitive containers (dict, list, tuple, str,
int, float, bool, None) and are read with ``torch.load(..., weights_only=True)``, which
refuses arbitrary pickled objects. :func:`check_weights_only` verifies that before writing,
so a non-loadable checkpoint is an error at save time, not at resume time.

Layout of a resume checkpoint (``FORMAT``, ``VERSION``)::

    {"format": "zotheory.llm.checkpoint", "version": 2, "kind": "resume" | "weights",
     "sha256": str,                        # content_digest of everything else
     "step": int,
     "trainable": {name: tensor},          # the trainable tensors only (FT: all, LoRA: adapters)
     "optimizer": optimizer.state_dict(),  # ZO: seed + step counter + declared state; FO: torch's
     "data": BatchStream.state_dict(),     # epoch and position of the batch order
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "trainer": {...},                     # counters, best dev accuracy, the config}
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

import torch

from zotheory import atomicio

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "atomic_save",
    "content_digest",
    "previous_path",
    "check_weights_only",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT = "zotheory.llm.checkpoint"
VERSION = 2

_PRIMITIVES = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read (names the file and the problem)."""


def check_weights_only(obj: Any, where: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``obj`` holds only tensors and primitive containers."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PRIMITIVES):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"{where}: key {k!r} of type {type(k).__name__} is not a str or int")
            check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_weights_only(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where} holds a {type(obj).__module__}.{type(obj).__name__} ({obj!r:.60}); checkpoints may only "
        "hold tensors and primitive containers so that they load with torch.load(weights_only=True)"
    )


def _feed(h: Any, obj: Any) -> None:
    """Hash ``obj`` canonically: a type tag, then its content (dict keys in sorted order)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_digest(obj: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a canonical serialisation of ``obj`` without its ``"sha256"`` key."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in obj.items() if k != "sha256"})
    return h.hexdigest()


def previous_path(path: str | Path) -> Path:
    """Where ``atomic_save(..., keep_previous=True)`` keeps the file it replaced: ``last.pt`` -> ``last.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def atomic_save(obj: Mapping[str, Any], path: str | Path, *, keep_previous: bool = False) -> None:
    """``torch.save(obj)`` to ``path`` atomically with its content hash (module docstring).

    ``keep_previous``: the file replaced stays readable as :func:`previous_path`.
    """
    check_weights_only(obj, str(path))
    payload = dict(obj)
    payload["sha256"] = content_digest(payload)
    target = Path(path)
    with atomicio.atomic_file(target, "wb") as f:
        torch.save(payload, cast(BinaryIO, f))  # atomic_file yields the file it opened with mode "wb"
        if keep_previous and target.exists():
            with atomicio.atomic_path(previous_path(target)) as tmp:
                tmp.unlink()
                os.link(target, tmp)


def _read(p: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a {FORMAT} checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(p)!r} has version {obj.get('version')!r}, this code reads {VERSION}")
    if obj.get("sha256") != content_digest(obj):
        raise CheckpointError(
            f"checkpoint {str(p)!r} is corrupt: its content hash does not match (sha256 {obj.get('sha256')!r:.20})"
        )
    return obj


def _offer_previous(p: Path) -> str:
    prev = previous_path(p)
    if not prev.is_file():
        return ""
    try:
        step = _read(prev, "cpu").get("step")
    except CheckpointError:
        return f"; the previous checkpoint {str(prev)!r} is damaged too"
    return f"; the previous checkpoint {str(prev)!r} (step {step}) is intact: to resume from it, run `mv {prev} {p}`"


def load_checkpoint(
    path: str | Path, *, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`atomic_save` with ``weights_only=True``, check its
    header and verify its content hash (a damaged file names the previous checkpoint, if intact)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        obj = _read(p, map_location)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{_offer_previous(p)}") from None
    if kind is not None and obj.get("kind") != kind:
        raise CheckpointError(f"checkpoint {str(p)!r} is a {obj.get('kind')!r} checkpoint, expected {kind!r}")
    return obj


def capture_rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device); only first-order runs with
    dropout draw from them, ZO optimizers use private generators."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the global CPU (and, when saved and available, CUDA) generators to a :func:`capture_rng_state` result."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
