"""Memory readings, one way each, in bytes: the trainer, the profiler, the OPT script and benchmarks/ use them.

* Process resident set (CPU): ``VmRSS`` (current) and ``VmHWM`` (peak, the high-water mark) from
  ``/proc/self/status`` (Linux ``proc(5)``). Writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0)
  resets the high-water mark to the current resident set. Where ``/proc`` is absent or unreadable
  (macOS, Windows, a sandbox) the readers return ``None`` and :func:`reset_process_peak` returns
  ``False``; no reader falls back to ``ru_maxrss`` (whose unit differs between platforms).
* CUDA: ``torch.cuda.memory_allocated`` (current) and ``torch.cuda.max_memory_allocated`` (peak since
  ``torch.cuda.reset_peak_memory_stats``).
* Optimizer state: :func:`optimizer_state_bytes`.

:class:`Meter` (CPU) and :class:`CudaMeter` give both devices one interface (synchronise, reset the
peak, read current and peak memory); :func:`make_meter` picks one for a device.
"""

from __future__ import annotations

import gc
import platform
from typing import Any

import torch

__all__ = [
    "CPU_PEAK_KIND",
    "CUDA_PEAK_KIND",
    "CudaMeter",
    "Meter",
    "cuda_peak_bytes",
    "make_meter",
    "optimizer_state_bytes",
    "peak_memory",
    "process_peak_rss",
    "process_rss",
    "reset_process_peak",
]

#: ``peak_memory_kind`` of :func:`peak_memory` (recorded in the trainer's ``results.json``).
CPU_PEAK_KIND = "cpu_peak_rss_process"
CUDA_PEAK_KIND = "cuda_max_memory_allocated"

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_bytes(field: str) -> int | None:
    """``field`` of ``/proc/self/status`` (a ``kB`` value) in bytes; ``None`` where it cannot be read."""
    try:
        with open(_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def process_rss() -> int | None:
    """The process's current resident set size in bytes (``VmRSS``); ``None`` without ``/proc``."""
    return _status_bytes("VmRSS")


def process_peak_rss() -> int | None:
    """The process's peak resident set size in bytes (``VmHWM``) since start or the last
    :func:`reset_process_peak`; ``None`` without ``/proc``."""
    return _status_bytes("VmHWM")


def reset_process_peak() -> bool:
    """Reset ``VmHWM`` to the current resident set (write ``5`` to ``/proc/self/clear_refs``).

    Returns ``False`` (and changes nothing) where that file cannot be written.
    """
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def cuda_peak_bytes(device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated(device)``: peak bytes held by tensors since the last reset."""
    return int(torch.cuda.max_memory_allocated(device))


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory so far as a record: ``peak_memory_bytes`` (CUDA peak on a GPU, else the process's
    peak resident set, ``None`` without ``/proc``) and ``peak_memory_kind``."""
    if device.type == "cuda":
        return {"peak_memory_bytes": cuda_peak_bytes(device), "peak_memory_kind": CUDA_PEAK_KIND}
    return {"peak_memory_bytes": process_peak_rss(), "peak_memory_kind": CPU_PEAK_KIND}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of optimizer state: ``optimizer.state_bytes()`` where it exists (zotheory optimizers,
    direction-policy state included), else the sum of ``numel * element_size`` over the non-scalar
    tensors in ``optimizer.state`` (``torch.optim`` optimizers; step counters are not counted)."""
    if hasattr(optimizer, "state_bytes"):
        return int(optimizer.state_bytes())
    total = 0
    for st in optimizer.state.values():
        if isinstance(st, dict):
            total += sum(
                v.numel() * v.element_size() for v in st.values() if isinstance(v, torch.Tensor) and v.dim() > 0
            )
    return total


class Meter:
    """Synchronisation and memory readings of one device: the CPU here, :class:`CudaMeter` on a GPU.

    On the CPU, memory is the process's resident set: :meth:`peak` reads ``VmHWM`` and
    :meth:`reset_peak` resets it through ``/proc/self/clear_refs``. Where that reset is not possible,
    :meth:`peak` returns the never-reset high-water mark and ``peak_resettable`` becomes ``False``
    (recorded with every measurement); without ``/proc`` the readings are ``None``.
    """

    kind = "cpu"
    memory_kind = "cpu_process_rss"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_resettable = True

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on the CPU)."""
        return None

    def empty_cache(self) -> None:
        """Free what the garbage collector (and on a GPU the caching allocator) holds."""
        gc.collect()

    def reset_peak(self) -> None:
        """Start a new peak at the current usage."""
        if not reset_process_peak():
            self.peak_resettable = False

    def allocated(self) -> int | None:
        """Current usage in bytes."""
        return process_rss()

    def peak(self) -> int | None:
        """Peak usage in bytes since the last :meth:`reset_peak`."""
        return process_peak_rss()

    def describe(self) -> dict[str, Any]:
        """The device, for the environment record."""
        return {
            "device": "cpu",
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        }


class CudaMeter(Meter):
    """``torch.cuda`` readings: ``max_memory_allocated`` after ``reset_peak_memory_stats``."""

    kind = "cuda"
    memory_kind = CUDA_PEAK_KIND

    def synchronize(self) -> None:
        """``torch.cuda.synchronize``."""
        torch.cuda.synchronize(self.device)

    def empty_cache(self) -> None:
        """Garbage-collect, then return cached blocks to the driver."""
        gc.collect()
        torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        """``torch.cuda.reset_peak_memory_stats``."""
        torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int | None:
        """``torch.cuda.memory_allocated``."""
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int | None:
        """``torch.cuda.max_memory_allocated``."""
        return cuda_peak_bytes(self.device)

    def describe(self) -> dict[str, Any]:
        """GPU name, memory, CUDA version and compute capability."""
        props = torch.cuda.get_device_properties(self.device)
        return {
            "device": torch.cuda.get_device_name(self.device),
            "total_memory_bytes": int(props.total_memory),
            "cuda": torch.version.cuda,
            "capability": f"{props.major}.{props.minor}",
        }


def make_meter(device: str | torch.device) -> Meter:
    """The meter of ``device`` (``cpu`` or ``cuda[:N]``); a clear error for anything else."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        return CudaMeter(dev)
    if dev.type == "cpu":
        return Meter(dev)
    raise ValueError(f"unsupported device {str(device)!r}; use cpu or cuda[:N]")
