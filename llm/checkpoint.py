"""Atomic, weights-only checkpoints of a training run.

Writing. Every file goes to a temporary file *in the same directory* (so that the rename
stays on one file system), is flushed and ``fsync``-ed, then moved over the target with
``os.replace`` (atomic on POSIX), and the directory entry is ``fsync``-ed. A crash or an
exception at any point leaves the previous file intact and no temporary behind (the
temporary is removed on an exception; a hard kill can leave one ``.<name>.*.tmp``, which
is never read).

Reading. Checkpoints hold only tensors and primitive containers (dict, list, tuple, str,
int, float, bool, None) and are read with ``torch.load(..., weights_only=True)``, which
refuses arbitrary pickled objects. :func:`check_weights_only` verifies that before writing,
so a non-loadable checkpoint is an error at save time, not at resume time.

Layout of a resume checkpoint (``FORMAT``, ``VERSION``)::

    {"format": "zotheory.llm.checkpoint", "version": 1, "kind": "resume" | "weights",
     "step": int,
     "trainable": {name: tensor},          # the trainable tensors only (FT: all, LoRA: adapters)
     "optimizer": optimizer.state_dict(),  # ZO: seed + step counter + declared state; FO: torch's
     "data": BatchStream.state_dict(),     # epoch and position of the batch order
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "trainer": {...},                     # counters, best dev accuracy, the config}
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_save",
    "check_weights_only",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT = "zotheory.llm.checkpoint"
VERSION = 1

_PRIMITIVES = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read (names the file and the problem)."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: str | Path, mode: str):  # type: ignore[no-untyped-def]
    """Yield a file object writing to a temporary beside ``path``; publish it atomically on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with _atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with _atomic_file(path, "w") as f:
        f.write(text)


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


def atomic_save(obj: Mapping[str, Any], path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (module docstring); checks the content first."""
    check_weights_only(obj, str(path))
    with _atomic_file(path, "wb") as f:
        torch.save(dict(obj), f)


def load_checkpoint(path: str | Path, *, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`atomic_save` with ``weights_only=True`` and check its header."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a {FORMAT} checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(p)!r} has version {obj.get('version')!r}, this code reads {VERSION}")
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
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
