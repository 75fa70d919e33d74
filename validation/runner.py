"""Run a selection of claims, in worker processes, and collect their results.

Every claim runs in a fresh context ``Context(size, seed)`` and derives all of its
randomness from ``seed``, so a claim's result does not depend on which other claims run,
in which order, or in which worker: same seed, same ``results.json`` (timings live apart,
in ``timing.json``). Workers are started with the ``spawn`` method and run torch with one
thread each, which also keeps floating-point reductions identical from run to run.

A claim that raises is a failed claim whose traceback goes into the report; a worker that
dies takes only its claim down with it (the pool is rebuilt for the rest). Each record carries
the claim's expected verdict and its outcome (:func:`validation.core.classify`); the suite is
``as_expected`` when no outcome is unexpected and nothing crashed.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from validation import load_claims
from validation.core import AS_EXPECTED, REGISTRY, Claim, ClaimResult, Context, classify
from validation.plots import render_plots

SIZES = ("quick", "full")


@dataclass
class ClaimOutcome:
    """What the runner keeps of one claim: its JSON record and its wall time."""

    name: str
    record: dict[str, Any]
    seconds: float
    cpu_seconds: float | None = None

    def __post_init__(self) -> None:
        cpu = self.record.pop("_cpu_seconds", None)
        if self.cpu_seconds is None:
            self.cpu_seconds = cpu

    @property
    def passed(self) -> bool:
        return self.record["verdict"] == "pass"

    @property
    def outcome(self) -> str:
        return self.record["outcome"]


@dataclass
class SuiteResult:
    """The outcomes of one suite run (in name order), with its size, seed, worker count and wall time."""

    size: str
    seed: int
    outcomes: list[ClaimOutcome] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1

    @property
    def failed(self) -> list[str]:
        return [o.name for o in self.outcomes if not o.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    def with_outcome(self, *outcomes: str) -> list[str]:
        """Names of the claims whose outcome is one of ``outcomes``."""
        return [o.name for o in self.outcomes if o.outcome in outcomes]

    @property
    def unexpected(self) -> list[str]:
        """Claims whose verdict differs from its expectation, or that crashed."""
        return [o.name for o in self.outcomes if o.outcome not in AS_EXPECTED]

    @property
    def as_expected(self) -> bool:
        """Every verdict as expected and no crash: what the command's exit status reports."""
        return not self.unexpected


# ---------------------------------------------------------------------- selection
def select_claims(
    registry: dict[str, Claim], names: Sequence[str] | None = None, tags: Sequence[str] | None = None
) -> list[Claim]:
    """Claims whose name is in ``names`` or that carry one of ``tags`` (all when both are empty).

    Raises:
        ValueError: an unknown claim name or a tag no claim carries.
    """
    names = list(names or [])
    tags = list(tags or [])
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; run `python -m validation --list` to see them")
    known_tags = {t for c in registry.values() for t in c.tags}
    bad_tags = [t for t in tags if t not in known_tags]
    if bad_tags:
        raise ValueError(f"no claim carries the tag(s) {bad_tags}; known tags: {sorted(known_tags)}")
    if not names and not tags:
        return [registry[n] for n in sorted(registry)]
    chosen = {n for n in names}
    chosen |= {c.name for c in registry.values() if set(c.tags) & set(tags)}
    return [registry[n] for n in sorted(chosen)]


# ---------------------------------------------------------------------- executing one claim
def _set_single_thread() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def _exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Daemon thread of a worker: exit when the parent process is gone (a killed runner must not leave
    workers computing claims for nobody; process pools do not stop them by themselves)."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_init(parent: int) -> None:
    """Worker initialiser: exits with the runner, one torch thread, headless matplotlib, every claim module
    imported."""
    _exit_with_parent(parent)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _set_single_thread()
    load_claims()


def execute_claim(claim: Claim, size: str, seed: int, plot_dir: Path | None = None) -> dict[str, Any]:
    """Run one claim and return its JSON record (never raises for a failing claim)."""
    record: dict[str, Any] = {
        "name": claim.name,
        "source": claim.source,
        "tags": list(claim.tags),
        "description": claim.description,
        "expected": claim.expected,
        "expected_reason": claim.expected_reason,
    }
    try:
        # size is a str here; run_suite has checked it against SIZES, the Literal that Context expects
        result = claim.run(Context(size=size, seed=seed))  # type: ignore[arg-type]
        if not isinstance(result, ClaimResult):
            raise TypeError(f"claim {claim.name!r} returned {type(result).__name__}, not a ClaimResult")
        body = result.to_json()
        record.update(body)
        record["passed"] = bool(result.passed)
        record["verdict"] = "pass" if result.passed else "fail"
        record["error"] = None
    except Exception:  # a claim that raises is a failed claim, with its traceback in the report
        record.update(
            predicted="",
            measured="exception raised",
            passed=False,
            statistics={},
            verdict_rule="a claim that raises an exception fails",
            plots=[],
            notes="",
        )
        record["verdict"] = "fail"
        record["error"] = traceback.format_exc()
    record["outcome"] = classify(record["passed"], claim.expected, crashed=record["error"] is not None)
    record["plot_files"] = []
    if plot_dir is not None and record["plots"]:
        try:
            record["plot_files"] = render_plots(claim.name, record["plots"], plot_dir)
        except Exception:
            record["plot_error"] = traceback.format_exc()
    return record


def _run_by_name(name: str, size: str, seed: int, plot_dir: str | None) -> tuple[dict[str, Any], float]:
    start, cpu = time.perf_counter(), time.process_time()
    record = execute_claim(REGISTRY[name], size, seed, Path(plot_dir) if plot_dir else None)
    record["_cpu_seconds"] = time.process_time() - cpu  # moved to timing.json by the runner
    return record, time.perf_counter() - start


def _crash_record(claim: Claim, message: str) -> dict[str, Any]:
    return {
        "name": claim.name,
        "source": claim.source,
        "tags": list(claim.tags),
        "description": claim.description,
        "expected": claim.expected,
        "expected_reason": claim.expected_reason,
        "outcome": classify(False, claim.expected, crashed=True),
        "predicted": "",
        "measured": "worker process died",
        "passed": False,
        "verdict": "fail",
        "statistics": {},
        "verdict_rule": "a claim whose process dies fails",
        "plots": [],
        "notes": "",
        "error": message,
        "plot_files": [],
    }


# ---------------------------------------------------------------------- the suite
def run_suite(
    claims: Iterable[Claim],
    *,
    size: str = "quick",
    seed: int = 0,
    workers: int = 2,
    plot_dir: Path | None = None,
    progress: bool = True,
    on_result: Callable[[ClaimOutcome], None] | None = None,
) -> SuiteResult:
    """Run ``claims`` at ``size`` with master ``seed``.

    ``workers <= 1`` runs in this process (what the tests use, so that monkeypatches
    apply); otherwise a pool of ``workers`` spawned processes runs the claims, costliest
    first. Outcomes are returned in name order whatever the completion order.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    claims = sorted(claims, key=lambda c: c.name)
    suite = SuiteResult(size=size, seed=seed, workers=max(1, workers))
    bar = _progress_bar(len(claims), progress)
    start = time.perf_counter()

    def done(outcome: ClaimOutcome) -> None:
        suite.outcomes.append(outcome)
        if bar is not None:
            bar.set_postfix_str(f"{outcome.name}: {outcome.record['verdict']}", refresh=False)
            bar.update(1)
        if on_result is not None:
            on_result(outcome)

    try:
        if workers <= 1 or len(claims) <= 1:
            _run_in_process(claims, size, seed, plot_dir, done)
        else:
            _run_in_pool(claims, size, seed, plot_dir, workers, done)
    finally:
        if bar is not None:
            bar.close()
    suite.seconds = time.perf_counter() - start
    suite.outcomes.sort(key=lambda o: o.name)
    return suite


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="claims", unit="claim", dynamic_ncols=True)


def _run_in_process(
    claims: list[Claim], size: str, seed: int, plot_dir: Path | None, done: Callable[[ClaimOutcome], None]
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for c in claims:
            t0, cpu = time.perf_counter(), time.process_time()
            record = execute_claim(c, size, seed, plot_dir)
            done(ClaimOutcome(c.name, record, time.perf_counter() - t0, time.process_time() - cpu))
    finally:
        torch.set_num_threads(threads)


def _run_in_pool(
    claims: list[Claim], size: str, seed: int, plot_dir: Path | None, workers: int, done: Callable[[ClaimOutcome], None]
) -> None:
    # Longest processing time first: a good schedule for independent jobs on few workers.
    queue = sorted(claims, key=lambda c: (-c.cost, c.name))
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND")}
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    try:
        suspects = _pool_pass(queue, size, seed, plot_dir, workers, done)
        # A dead worker breaks the whole pool and every claim in flight with it: rerun each of
        # those alone, so that only the claim that really kills its process is marked so.
        for c in suspects:
            again = _pool_pass([c], size, seed, plot_dir, 1, done)
            for dead in again:
                done(
                    ClaimOutcome(
                        dead.name,
                        _crash_record(
                            dead,
                            "the worker process running this claim died "
                            "(killed, out of memory or a crash in native code)",
                        ),
                        0.0,
                    )
                )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pool_pass(
    queue: list[Claim], size: str, seed: int, plot_dir: Path | None, workers: int, done: Callable[[ClaimOutcome], None]
) -> list[Claim]:
    """Run ``queue`` in pools of ``workers`` processes; returns the claims in flight when a pool broke."""
    import multiprocessing as mp

    queue = list(queue)
    suspects: list[Claim] = []
    while queue:
        started: dict[Future, tuple[Claim, float]] = {}
        broken = False
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(os.getpid(),)
        ) as pool:
            while (queue and not broken) or started:
                # keep exactly `workers` claims in flight, so that each one's start time is known
                while queue and not broken and len(started) < workers:
                    c = queue.pop(0)
                    fut = pool.submit(_run_by_name, c.name, size, seed, str(plot_dir) if plot_dir else None)
                    started[fut] = (c, time.perf_counter())
                finished, _ = wait(list(started), return_when=FIRST_COMPLETED)
                for fut in finished:
                    c, t0 = started.pop(fut)
                    try:
                        record, seconds = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(c)
                        continue
                    except Exception:
                        record, seconds = _crash_record(c, traceback.format_exc()), time.perf_counter() - t0
                    done(ClaimOutcome(c.name, record, seconds))
    return suspects


def summarize_seconds(seconds: float) -> str:
    """A duration for people: ``'2 min 05 s'``, or ``'4.2 s'`` under a minute."""
    minutes, secs = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"
