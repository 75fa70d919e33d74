"""Atomic file writes: the one helper every writer of results, reports, plots and checkpoints uses.

A file is written to a temporary ``.<name>.<random>.tmp<suffix>`` in the *same directory*,
flushed and ``fsync``-ed, then renamed over the target with ``os.replace`` (atomic on
POSIX), and the directory entry is ``fsync``-ed. A reader therefore sees either the old
file or the new one, never a torn one. An exception removes the temporary; a hard kill
(SIGKILL, power loss) can leave one behind, which :func:`remove_stale_temporaries` deletes
at the next start of the same output folder.

Permissions. ``tempfile.mkstemp`` creates files with mode ``0600``; the temporary is given
``0666 & ~umask`` before it is published, the mode ``open(path, "w")`` would have produced.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_file", "write_bytes", "write_text", "remove_stale_temporaries", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _temporary(target: Path) -> tuple[int, Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    # the target's own suffix goes last so that writers which infer a format from it (savefig) work
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX + target.suffix, dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, Path(tmp)


def _publish(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (``savefig``,
    ``torch.save`` of a path); on success it is synced and renamed over ``path``."""
    target = Path(path)
    fd, tmp = _temporary(target)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = None) -> Iterator[object]:
    """Yield an open file writing to a temporary beside ``path``; publish it atomically on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else (encoding or "utf-8")) as f:
            yield f


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically."""
    with atomic_file(path, "wb") as f:
        f.write(data)  # type: ignore[attr-defined]


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically."""
    with atomic_file(path, "w") as f:
        f.write(text)  # type: ignore[attr-defined]


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries a hard kill left in ``directory`` (only names this module makes:
    ``.<name>.<random>.tmp[<suffix>]``); returns the removed paths, sorted."""
    d = Path(directory)
    if not d.is_dir():
        return []
    removed = []
    for p in sorted(d.iterdir()):
        stem = p.name
        if not (stem.startswith(".") and p.is_file()):
            continue
        rest = stem[1:]
        if TMP_SUFFIX not in rest or "." not in rest:
            continue
        before, _, after = rest.rpartition(TMP_SUFFIX)
        name, _, rand = before.rpartition(".")
        if name and rand and (after == "" or name.endswith(after)):
            p.unlink()
            removed.append(p)
    return removed
