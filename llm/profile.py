"""Memory and speed of one optimizer step against inference: ``python -m llm.profile``.

What is measured, per (model shape, mode, method), each case in a **fresh subprocess** so that
peaks do not mix:

* memory: the peak during ``n`` optimizer steps (or ``n`` inference forwards for the
  ``inference`` case) after the model, the batch and the optimizer are built.
  GPU: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``
  (the convention of MeZO / JAGUAR tables, ``docs/theory.md`` §6.2).
  CPU: the process's peak resident set size ``VmHWM``, reset just before the measured
  phase by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0); the resident size
  before the model was built (Python, torch, transformers) is recorded as ``baseline`` and
  ratios are given both on absolute peaks and on peaks above that baseline. The readings are those
  of :mod:`llm.memory`; a CPU profile needs ``/proc`` (Linux) and says so where it is absent.
* time: in the same process, after the memory phase, ``repeats`` interleaved pairs of
  (one forward pass of the step's closure, one optimizer step); the ratio is
  ``median(step) / (evals_per_step * median(forward))``: the price of a step beyond the
  forward passes it needs (perturbation, direction regeneration, update, state). First-order
  steps (forward + backward + update) are reported against their one forward as well.

Targets checked for ZO-SGD (MeZO's claim: "the same memory footprint as inference"):
peak <= 1.05 x inference peak and step time <= 1.10 x its forward passes.

The batch is synthetic: ``batch_size`` x ``seq_len`` random token ids (no padding), scored
as a two-class label-word classification (``llm.objective``), so every case runs the same
computation. Models are OPT presets with random weights (``llm.models.build_opt_from_preset``),
so nothing is downloaded.

Examples::

    python -m llm.profile                                   # CPU defaults -> results/llm/profile_cpu.json
    python -m llm.profile --device cuda --dtype fp16 --out results/llm/profile_h100.json
    python -m llm.profile --cases opt-125m:ft:zo-sgd:time,opt-125m:ft:inference:time --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from llm import models
from llm.data import CausalLMBatch
from llm.memory import make_meter, optimizer_state_bytes
from llm.methods import available_methods, build_optimizer, resolve_method
from llm.objective import CausalLMClassificationObjective, make_backward_closure, make_closure
from zotheory import atomicio, directions, lmo
from zotheory.optim import OPTIMIZERS, jaguar, muon

__all__ = [
    "Case",
    "DEFAULT_CPU_CASES",
    "DEFAULT_GPU_CASES",
    "parse_cases",
    "measure_case",
    "run_cases",
    "summarize",
    "main",
]

#: Default options per method for profiling (an lr is irrelevant for memory and time but a
#: zero lr would let some methods skip work; eps 1e-3 is MeZO's).
PROFILE_OPTIONS: dict[str, dict[str, Any]] = {
    "fo-sgd": {"lr": 1e-5},
    "fo-adam": {"lr": 1e-5},
    "adanaged": {},
}
ZO_DEFAULT_OPTIONS: dict[str, Any] = {"lr": 1e-7, "eps": 1e-3}

TARGETS = {"zo-sgd": {"memory_ratio_max": 1.05, "time_ratio_max": 1.10}}


@dataclass(frozen=True)
class Case:
    """One measurement: ``preset`` shape, ``mode`` (ft/lora), ``method`` (``inference`` or an
    optimizer), and whether to time it (``time``) or only take its memory."""

    preset: str
    mode: str
    method: str
    time: bool = True

    @property
    def key(self) -> str:
        return f"{self.preset}:{self.mode}:{self.method}"

    @property
    def method_name(self) -> str:
        """The registry name (``method`` may carry options: ``zo-sgd@directions=rademacher``)."""
        return self.method.split("@", 1)[0]

    @property
    def method_options(self) -> dict[str, Any]:
        """Options after ``@``: ``key=value`` pairs separated by ``;`` (values parsed as JSON, else strings)."""
        if "@" not in self.method:
            return {}
        out: dict[str, Any] = {}
        for item in self.method.split("@", 1)[1].split(";"):
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise ValueError(f"case {self.key!r}: method options must be key=value, got {item!r}")
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
        return out


def _cases(presets_modes: list[tuple[str, str]], methods: list[str], time_: bool) -> list[Case]:
    return [Case(p, m, meth, time_) for p, m in presets_modes for meth in ["inference", *methods]]


def _registry_methods() -> list[str]:
    return list(OPTIMIZERS)


#: ZO-SGD with the cheap direction option (packed Rademacher signs), next to the Gaussian default.
RADEMACHER_ZO_SGD = "zo-sgd@directions=rademacher"

#: CPU: OPT-125m shape for time and memory, every registered method (plus ZO-SGD with Rademacher directions
#: and the FO baselines); OPT-1.3B for memory only (inference, ZO-SGD, JAGUAR; FO at 1.3B in fp32 needs 2-4x
#: the weights' 5.3 GB and a backward that takes minutes on 2 cores -- the 125m rows show the FO ratios).
DEFAULT_CPU_CASES: list[Case] = _cases(
    [("opt-125m", "ft")], [*_registry_methods(), RADEMACHER_ZO_SGD, "fo-sgd", "fo-adam"], True
) + _cases([("opt-1.3b", "ft")], ["zo-sgd", "jaguar-signsgd"], False)

#: GPU: OPT-1.3B, FT and LoRA (the JAGUAR Table 3 setting), every registered method and the FO baselines.
DEFAULT_GPU_CASES: list[Case] = _cases(
    [("opt-1.3b", "ft"), ("opt-1.3b", "lora")], [*_registry_methods(), RADEMACHER_ZO_SGD, "fo-sgd", "fo-adam"], True
)


def parse_cases(text: str) -> list[Case]:
    """``preset:mode:method[:time|:memory]`` comma-separated."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) not in (3, 4) or parts[1] not in ("ft", "lora"):
            raise ValueError(f"case {item!r}: expected preset:ft|lora:method[:time|:memory]")
        if len(parts) == 4 and parts[3] not in ("time", "memory"):
            raise ValueError(f"case {item!r}: the fourth field must be 'time' or 'memory', got {parts[3]!r}")
        out.append(Case(parts[0], parts[1], parts[2], len(parts) == 3 or parts[3] == "time"))
    return out


# --------------------------------------------------------------------------------------
# one case (runs inside the worker subprocess)
# --------------------------------------------------------------------------------------


def _reading(value: int | None, what: str) -> int:
    """A memory reading the profile cannot do without (``None``: ``/proc/self/status`` is unreadable)."""
    if value is None:
        raise RuntimeError(f"{what} cannot be read on this system: CPU profiling needs /proc/self/status (Linux)")
    return value


def synthetic_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0) -> Any:
    """A ``CausalLMBatch`` of random token ids (shared layout, two single-token label words)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab_size, (batch_size, seq_len), generator=g)
    labels = torch.randint(0, 2, (batch_size,), generator=g)
    targets = torch.tensor([[min(100, vocab_size - 2), min(200, vocab_size - 1)]] * batch_size)
    return CausalLMBatch(
        input_ids=ids,
        attention_mask=torch.ones(batch_size, seq_len, dtype=torch.long),
        position_ids=torch.arange(seq_len).expand(batch_size, seq_len).clone(),
        targets=targets,
        target_mask=torch.ones_like(targets, dtype=torch.bool),
        labels=labels,
        num_options=2,
        layout="shared",
    )


def measure_case(
    case: Case,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch_size: int = 16,
    seq_len: int = 64,
    repeats: int = 3,
    memory_steps: int = 1,
    options: dict[str, Any] | None = None,
    breakdown_steps: int = 1,
) -> dict[str, Any]:
    """Build the case's model, batch and optimizer; measure memory, then (if ``case.time``) time."""
    dev = torch.device(device)
    meter = make_meter(dev)
    import transformers.models.opt.modeling_opt  # noqa: F401 - imported before the baseline reading

    if case.mode == "lora":
        import peft  # noqa: F401
    gc.collect()
    baseline = _reading(meter.allocated(), "current memory")
    t0 = time.perf_counter()
    preset = models.get_opt_preset(case.preset)
    model = models.build_opt_from_preset(preset, dtype=dtype, seed=0, device=dev)
    lora = {"r": 8, "alpha": 16} if case.mode == "lora" else {}
    model = models.prepare_model(model, case.mode, seed=0, **lora)
    objective = CausalLMClassificationObjective(model)
    batch = synthetic_batch(preset.vocab_size, batch_size, seq_len).to(dev)
    named = models.named_trainable_parameters(model)
    forward = make_closure(objective, batch)
    optimizer = None
    kind = "inference"
    opts: dict[str, Any] = {}
    if case.method != "inference":
        spec = resolve_method(case.method_name)
        kind = spec.kind
        opts = dict(PROFILE_OPTIONS.get(spec.name, ZO_DEFAULT_OPTIONS if spec.kind == "zo" else {}))
        opts.update(case.method_options)
        opts.update(options or {})
        optimizer = build_optimizer(spec, named, opts, seed=0)
    step_closure: Any = make_backward_closure(objective, batch) if kind == "fo" else forward
    build_s = time.perf_counter() - t0
    gc.collect()
    after_build = meter.allocated()

    sync = meter.synchronize

    def one() -> None:
        if optimizer is None:
            forward()
        else:
            optimizer.step(step_closure)

    # memory phase: the first call(s) after building (no warm-up: the peak of a fresh process)
    meter.empty_cache()
    meter.synchronize()
    meter.reset_peak()
    t0 = time.perf_counter()
    for _ in range(memory_steps):
        one()
    sync()
    first_s = time.perf_counter() - t0
    peak = _reading(meter.peak(), "peak memory")

    result: dict[str, Any] = {
        "case": case.key,
        "preset": case.preset,
        "mode": case.mode,
        "method": case.method,
        "kind": kind,
        "options": opts,
        "num_parameters": models.count_parameters(model),
        "num_trainable": sum(p.numel() for _, p in named),
        "largest_trainable_tensor": max(p.numel() for _, p in named),
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "evals_per_step": getattr(optimizer, "evals_per_step", 1 if kind == "fo" else None),
        "baseline_bytes": baseline,
        "after_build_bytes": after_build,
        "peak_bytes": peak,
        "peak_over_baseline_bytes": peak - baseline,
        "memory_steps": memory_steps,
        "optimizer_state_bytes": None if optimizer is None else optimizer_state_bytes(optimizer),
        "build_s": build_s,
        "first_calls_s": first_s,
    }
    if case.time:
        fwd_t: list[float] = []
        step_t: list[float] = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            forward()
            sync()
            fwd_t.append(time.perf_counter() - t0)
            if optimizer is not None:
                t0 = time.perf_counter()
                optimizer.step(step_closure)
                sync()
                step_t.append(time.perf_counter() - t0)
        result["forward_s"] = fwd_t
        result["forward_median_s"] = statistics.median(fwd_t)
        if step_t:
            result["step_s"] = step_t
            result["step_median_s"] = statistics.median(step_t)
        if kind == "zo" and breakdown_steps > 0:
            result["breakdown_s"] = measure_breakdown(optimizer, step_closure, breakdown_steps, sync)
    return result


class StepBreakdown:
    """Where a step's time goes: wall time inside the closure (``forward``), the in-place perturbation /
    restore / update sweeps of the direction family (``sweeps``, their draws included), the random draws
    alone (``draws``, inside sweeps and dense-estimate regeneration), and the update rules / LMOs
    (``lmo``: Newton–Schulz, sign, l2 and every :class:`zotheory.lmo.Norm` LMO). ``other`` is the step
    minus forward, sweeps and lmo (dense estimates, momentum and state arithmetic, Python overhead).

    The instrumentation wraps methods for the duration of a ``with`` block only, synchronising the GPU
    around every timed call, so these steps are slower than the uninstrumented ones the ratio uses.
    """

    CATEGORIES = ("forward", "sweeps", "draws", "lmo")

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.totals = dict.fromkeys(self.CATEGORIES, 0.0)
        self._depth = dict.fromkeys(self.CATEGORIES, 0)
        self._undo: list[tuple[Any, str, Any]] = []

    def _timer(self, func: Any, category: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth[category]:  # a nested call of the same category is counted once
                return func(*args, **kwargs)
            self._depth[category] += 1
            self.sync()
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.sync()
                self.totals[category] += time.perf_counter() - t0
                self._depth[category] -= 1

        return timed

    def _wrap(self, owner: Any, name: str, category: str) -> None:
        original = owner.__dict__.get(name)
        if original is None:
            return
        if isinstance(original, staticmethod):
            setattr(owner, name, staticmethod(self._timer(original.__func__, category)))
        else:
            setattr(owner, name, self._timer(original, category))
        self._undo.append((owner, name, original))

    def closure(self, fn: Any) -> Any:
        """``fn`` with its calls counted as ``forward``."""
        return self._timer(fn, "forward")

    def __enter__(self) -> StepBreakdown:
        for cls in _subclasses(directions.DirectionFamily):
            self._wrap(cls, "add_", "sweeps")
            for draw in ("_chunk", "_draw", "_block", "block", "factors", "location"):
                self._wrap(cls, draw, "draws")
            if cls in (directions.LowRank, directions.Coordinate, directions.Sphere, directions.Orthonormal):
                self._wrap(cls, "tensor_direction", "draws")
        self._wrap(directions, "_table_lookup", "draws")  # the table families' draw + gather (also in _addend)
        for cls in _subclasses(lmo.Norm) + _subclasses(lmo.BlockNorm):
            self._wrap(cls, "lmo", "lmo")
        for module in (muon, jaguar):
            for fn in ("update_direction", "apply_update_rules_"):
                self._wrap(module, fn, "lmo")
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    sub: type
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def measure_breakdown(optimizer: Any, closure: Any, steps: int, sync: Any) -> dict[str, float]:
    """Median seconds per category over ``steps`` instrumented steps (:class:`StepBreakdown`)."""
    rows: list[dict[str, float]] = []
    for _ in range(steps):
        with StepBreakdown(sync) as bd:
            timed_closure = bd.closure(closure)
            sync()
            t0 = time.perf_counter()
            optimizer.step(timed_closure)
            sync()
            total = time.perf_counter() - t0
        row = dict(bd.totals, step=total)
        row["other"] = total - row["forward"] - row["sweeps"] - row["lmo"]
        rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# --------------------------------------------------------------------------------------
# orchestration (parent process)
# --------------------------------------------------------------------------------------


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_cases(
    cases: list[Case], settings: dict[str, Any], *, log: Any = sys.stderr, on_record: Any = None
) -> list[dict[str, Any]]:
    """Run every case in its own ``python -m llm.profile --worker`` subprocess;
    ``on_record(records_so_far)`` is called after each case (partial reports)."""
    out: list[dict[str, Any]] = []
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            res_path = Path(tmp) / "result.json"
            spec = {"case": asdict(case), "settings": settings}
            cmd = [sys.executable, "-m", "llm.profile", "--worker", json.dumps(spec), "--result", str(res_path)]
            t0 = time.perf_counter()
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=_worker_env(settings.get("threads", 0)), check=False
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0 or not res_path.exists():
                tail = (proc.stderr or "").strip().splitlines()[-3:]
                rec: dict[str, Any] = {
                    "case": case.key,
                    "preset": case.preset,
                    "mode": case.mode,
                    "method": case.method,
                    "error": " | ".join(tail) or f"exit {proc.returncode}",
                }
            else:
                rec = json.loads(res_path.read_text())
            rec["subprocess_wall_s"] = wall
        print(f"[profile] {case.key}: {_short(rec)} ({wall:.0f} s)", file=log, flush=True)
        out.append(rec)
        if on_record is not None:
            on_record(out)
    return out


def _short(rec: dict[str, Any]) -> str:
    if "error" in rec:
        return "ERROR " + rec["error"][:200]
    s = f"peak {rec['peak_bytes'] / 2**30:.3f} GiB"
    if "step_median_s" in rec:
        s += f", step {rec['step_median_s']:.3f} s"
    if "forward_median_s" in rec:
        s += f", forward {rec['forward_median_s']:.3f} s"
    return s


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios against the ``inference`` record of the same preset and mode."""
    infer = {(r["preset"], r["mode"]): r for r in records if r["method"] == "inference" and "error" not in r}
    rows = []
    for r in records:
        row: dict[str, Any] = {"case": r["case"], "preset": r["preset"], "mode": r["mode"], "method": r["method"]}
        if "error" in r:
            row["error"] = r["error"]
            rows.append(row)
            continue
        row.update(
            peak_bytes=r["peak_bytes"],
            peak_over_baseline_bytes=r["peak_over_baseline_bytes"],
            optimizer_state_bytes=r.get("optimizer_state_bytes"),
            evals_per_step=r.get("evals_per_step"),
        )
        ref = infer.get((r["preset"], r["mode"]))
        if ref is not None:
            row["memory_ratio"] = r["peak_bytes"] / ref["peak_bytes"]
            base = r["baseline_bytes"]
            ref_net = ref["peak_bytes"] - ref["baseline_bytes"]
            row["memory_ratio_over_baseline"] = (r["peak_bytes"] - base) / ref_net if ref_net > 0 else None
        if "step_median_s" in r and r.get("forward_median_s"):
            n = r["evals_per_step"] or 1
            row["step_median_s"] = r["step_median_s"]
            row["forward_median_s"] = r["forward_median_s"]
            row["time_ratio"] = r["step_median_s"] / (n * r["forward_median_s"])
        elif "forward_median_s" in r:
            row["forward_median_s"] = r["forward_median_s"]
        if "breakdown_s" in r:
            bd = r["breakdown_s"]
            row["breakdown_s"] = bd
            row["breakdown_share"] = {k: v / bd["step"] for k, v in bd.items() if k != "step" and bd["step"] > 0}
        target = TARGETS.get(r["method"])
        if target is not None:
            checks = {}
            key_mem = "memory_ratio" if r.get("device_type") == "cuda" else "memory_ratio_over_baseline"
            if row.get(key_mem) is not None:
                checks["memory"] = {
                    "measure": key_mem,
                    "value": row[key_mem],
                    "max": target["memory_ratio_max"],
                    "ok": row[key_mem] <= target["memory_ratio_max"],
                }
            if "time_ratio" in row:
                checks["time"] = {
                    "value": row["time_ratio"],
                    "max": target["time_ratio_max"],
                    "ok": row["time_ratio"] <= target["time_ratio_max"],
                }
            row["targets"] = checks
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | peak GiB | peak-baseline GiB | mem ratio | mem ratio (net) | state GiB | evals/step | step s | fwd s "
        "| step/(evals x fwd) | forward / sweeps / draws / lmo / other (% of an instrumented step) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error'][:80]} |" + " |" * 9)
            continue

        def f(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        share = r.get("breakdown_share")
        split = (
            "-"
            if not share
            else " / ".join(f"{100 * share[k]:.0f}" for k in ("forward", "sweeps", "draws", "lmo", "other"))
        )
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                r["case"],
                f(r["peak_bytes"] / 2**30, ".3f"),
                f(r["peak_over_baseline_bytes"] / 2**30, ".3f"),
                f(r.get("memory_ratio"), ".3f"),
                f(r.get("memory_ratio_over_baseline"), ".3f"),
                f(None if r.get("optimizer_state_bytes") is None else r["optimizer_state_bytes"] / 2**30, ".3f"),
                f(r.get("evals_per_step"), "d"),
                f(r.get("step_median_s"), ".3f"),
                f(r.get("forward_median_s"), ".3f"),
                f(r.get("time_ratio"), ".3f"),
                split,
            )
        )
    return "\n".join(lines)


def _machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.profile",
        description="Peak memory and step time of zotheory optimizers against inference on OPT shapes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="fp32 | fp16 | bf16 (default: fp32 on cpu, fp16 on cuda)")
    p.add_argument(
        "--cases", default=None, help="preset:mode:method[:time|:memory],... (default: the device's default set)"
    )
    p.add_argument(
        "--methods", default=None, help="restrict the default set to these methods (comma list; inference is kept)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument(
        "--memory-seq-len", type=int, default=None, help="sequence length of memory-only cases (default: --seq-len)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed (forward, step) pairs per case")
    p.add_argument("--memory-steps", type=int, default=1, help="calls in the memory phase")
    p.add_argument(
        "--breakdown-steps",
        type=int,
        default=1,
        help="instrumented ZO steps after the timing: forward / sweeps / draws / lmo / other (0: none)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch default)")
    p.add_argument("--out", default=None, help="JSON path (default results/llm/profile_<cpu|gpu>.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def _worker(spec_json: str, result_path: str) -> int:
    spec = json.loads(spec_json)
    s = spec["settings"]
    if s.get("threads"):
        torch.set_num_threads(int(s["threads"]))
    res = measure_case(
        Case(**spec["case"]),
        device=s["device"],
        dtype=s["dtype"],
        batch_size=s["batch_size"],
        seq_len=s["seq_len"] if spec["case"]["time"] else s.get("memory_seq_len", s["seq_len"]),
        repeats=s["repeats"],
        memory_steps=s["memory_steps"],
        breakdown_steps=s.get("breakdown_steps", 1),
    )
    res["device_type"] = torch.device(s["device"]).type
    res["seq_len"] = s["seq_len"] if spec["case"]["time"] else s.get("memory_seq_len", s["seq_len"])
    res["torch_threads"] = torch.get_num_threads()
    atomicio.write_text(result_path, json.dumps(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (``python -m llm.profile``); the exit status."""
    args = build_parser().parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.result)
    cuda = args.device.startswith("cuda")
    dtype = args.dtype or ("fp16" if cuda else "fp32")
    if args.cases:
        cases = parse_cases(args.cases)
    else:
        cases = DEFAULT_GPU_CASES if cuda else DEFAULT_CPU_CASES
        if args.methods:
            keep = {m.strip() for m in args.methods.split(",")} | {"inference"}
            cases = [c for c in cases if c.method in keep]
    known = set(available_methods()) | {"inference"}
    skipped = sorted({c.method for c in cases if c.method_name not in known})
    cases = [c for c in cases if c.method_name in known]
    settings = {
        "device": args.device,
        "dtype": dtype,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "memory_seq_len": args.memory_seq_len or args.seq_len,
        "repeats": args.repeats,
        "memory_steps": args.memory_steps,
        "breakdown_steps": args.breakdown_steps,
        "threads": args.threads,
    }

    machine = _machine(args.device)
    t0 = time.perf_counter()
    out = Path(args.out or f"results/llm/profile_{'gpu' if cuda else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(records: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        machine["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        report = _report(settings, machine, skipped, summarize(records), records, time.perf_counter() - t0)
        report["complete"] = complete
        report["command"] = "python -m llm.profile " + " ".join(sys.argv[1:] if argv is None else argv)
        report["cases_planned"] = [c.key for c in cases]
        atomicio.write_text(out, json.dumps(report, indent=2) + "\n")
        return report

    records = run_cases(cases, settings, on_record=lambda recs: write(recs, False))
    report = write(records, True)
    rows = report["rows"]
    print(format_table(rows))
    for r in rows:
        for name, chk in (r.get("targets") or {}).items():
            print(f"target {r['case']} {name}: {chk['value']:.3f} <= {chk['max']} -> {'OK' if chk['ok'] else 'MISSED'}")
    print(f"wrote {out} ({report['total_wall_s']:.0f} s)")
    return 0


def _report(
    settings: dict[str, Any],
    machine: dict[str, Any],
    skipped: list[str],
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    wall: float,
) -> dict[str, Any]:
    return {
        "what": "peak memory of one optimizer step vs inference, and step time vs the step's forward passes",
        "settings": settings,
        "notes": [
            "each case ran in a fresh subprocess; memory = peak during the first call(s) after building",
            "CPU memory: process peak RSS (VmHWM reset via /proc/self/clear_refs); "
            "baseline = RSS before the model was built",
            "GPU memory: torch.cuda.max_memory_allocated after reset_peak_memory_stats",
            "time ratio = median(step) / (evals_per_step * median(forward)), measured interleaved in one process",
            "breakdown_s: median of instrumented steps (synchronised around every timed call): "
            "forward = closure calls, "
            "sweeps = in-place perturb/restore/update passes (draws included), draws = random generation alone, "
            "lmo = update rules and LMOs (Newton-Schulz, sign, l2, norms), other = step - forward - sweeps - lmo",
            "synthetic batch of random token ids, no padding; OPT presets with random weights",
        ]
        + ([f"skipped (not in the registry): {skipped}"] if skipped else []),
        "targets": TARGETS,
        "machine": machine,
        "rows": rows,
        "records": records,
        "total_wall_s": wall,
    }


if __name__ == "__main__":
    raise SystemExit(main())
