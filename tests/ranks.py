"""Spawned torch.distributed ranks for the tests, with a hang guard.

``torch.multiprocessing.spawn(..., join=True)`` waits for ever on a rank that does not exit, so a
deadlock in one rank (a collective nobody answers, a process-group destructor that never returns)
would stall the whole suite. :func:`run_ranks` joins with a deadline instead, kills what is left,
and fails the test with the rank's number.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp

RANK_DEADLINE_S = 180.0


def free_port() -> int:
    """A TCP port on the loopback that was free a moment ago (the rendezvous port of one run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(
    target: Callable[..., None],
    args: tuple[Any, ...],
    world: int,
    *,
    hung: int | None = None,
    expect_success: bool = True,
    deadline_s: float = RANK_DEADLINE_S,
) -> list[int | None]:
    """Run ``target(rank, world, port, *args)`` in ``world`` spawned processes; return their exit codes.

    Every rank but ``hung`` must exit within ``deadline_s`` seconds (all together), else the test fails
    naming it; ``hung`` is killed once the others are done. With ``expect_success`` every rank that was
    waited for must exit with 0 (its traceback is on the captured stderr).
    """
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=target, args=(r, world, port, *args)) for r in range(world)]
    for p in procs:
        p.start()
    end = time.monotonic() + deadline_s
    try:
        for r, p in enumerate(procs):
            if r != hung:
                p.join(timeout=max(0.0, end - time.monotonic()))
                assert p.exitcode is not None, f"rank {r} of {world} did not exit within {deadline_s:.0f} s (hung)"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    codes = [p.exitcode for p in procs]
    if expect_success:
        bad = {r: c for r, c in enumerate(codes) if r != hung and c != 0}
        assert not bad, f"ranks exited with non-zero codes {bad}"
    return codes
