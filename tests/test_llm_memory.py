"""llm.memory: one reader per quantity, bytes everywhere, ``None`` where /proc is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm import memory

linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")


@linux_only
def test_process_peak_rises_with_an_allocation_and_resets() -> None:
    assert memory.reset_process_peak()
    before = memory.process_peak_rss()
    assert before is not None and before >= 1 << 20  # bytes, not kB: a Python process holds > 1 MiB
    big = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
    peak = memory.process_peak_rss()
    assert peak is not None and peak - before >= 60 << 20
    del big
    assert memory.reset_process_peak()
    after = memory.process_peak_rss()
    rss = memory.process_rss()
    assert after is not None and rss is not None
    assert after < peak  # the reset brought the high-water mark down to the current resident set


def test_readers_return_none_without_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(memory, "_STATUS", str(tmp_path / "missing" / "status"))
    monkeypatch.setattr(memory, "_CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    assert memory.process_rss() is None
    assert memory.process_peak_rss() is None
    assert memory.reset_process_peak() is False
    meter = memory.make_meter("cpu")
    meter.reset_peak()
    assert meter.peak_resettable is False
    assert meter.peak() is None
    assert memory.peak_memory(torch.device("cpu")) == {
        "peak_memory_bytes": None,
        "peak_memory_kind": memory.CPU_PEAK_KIND,
    }


def test_optimizer_state_bytes_for_torch_and_zotheory_optimizers() -> None:
    p = torch.nn.Parameter(torch.zeros(10, 3))
    adam = torch.optim.Adam([p], lr=0.1)
    assert memory.optimizer_state_bytes(adam) == 0  # no state before the first step
    p.grad = torch.ones_like(p)
    adam.step()
    assert memory.optimizer_state_bytes(adam) == 2 * 30 * 4  # two fp32 moments; the step counter is a scalar

    class Declared(torch.optim.SGD):
        def state_bytes(self) -> int:
            return 123

    assert memory.optimizer_state_bytes(Declared([p], lr=0.1)) == 123


def test_make_meter_rejects_bad_devices() -> None:
    assert isinstance(memory.make_meter("cpu"), memory.Meter)
    with pytest.raises(ValueError, match="'meta'"):
        memory.make_meter("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda'.*CUDA is not available"):
            memory.make_meter("cuda")


def test_no_other_module_reads_memory_itself() -> None:
    """The readers live in llm.memory only: the trainer, profiler, OPT script and benchmarks import them."""
    root = Path(__file__).resolve().parents[1]
    calls = ('open("/proc/self/status"', 'Path("/proc/self/status")', "max_memory_allocated(", "ru_maxrss")
    readers = [
        p.relative_to(root).as_posix()
        for folder in ("llm", "benchmarks")
        for p in sorted((root / folder).rglob("*.py"))
        if p.name != "memory.py" and any(c in p.read_text(encoding="utf-8") for c in calls)
    ]
    assert readers == []
