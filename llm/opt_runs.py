"""The OPT validation's runs: the protocol, one measurement (memory and time) of a method, one training run,
and the merged results file. The command line is :mod:`llm.opt_validation`, the tables :mod:`llm.opt_tables`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm import data as D
from llm import models
from llm.config import FinetuneConfig
from llm.memory import Meter, optimizer_state_bytes
from llm.methods import build_optimizer, check_method_options
from llm.objective import make_backward_closure, make_closure
from llm.opt_methods import MethodEntry
from llm.opt_tables import JAGUAR_SOURCE, format_gb, format_value, index_records, render_tables
from llm.run import build_run
from llm.step import FO_FORWARD_EQUIVALENTS
from llm.train import read_metrics, train
from zotheory import atomicio


def timed(fn: Callable[[], Any], meter: Meter) -> tuple[Any, float]:
    """``(fn(), seconds)`` with the device synchronised before and after."""
    meter.synchronize()
    t0 = time.perf_counter()
    out = fn()
    meter.synchronize()
    return out, time.perf_counter() - t0


def environment(meter: Meter) -> dict[str, Any]:
    """Python, torch, transformers and peft versions and the device, for the results' ``meta``."""
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **meter.describe(),
    }
    try:
        import peft

        env["peft"] = peft.__version__
    except ImportError:  # pragma: no cover - peft is a dependency of the llm extra
        env["peft"] = None
    return env


@dataclass(frozen=True)
class Protocol:
    """What every run shares (the ZO-Bench / JAGUAR protocol by default)."""

    model: str = "preset:1.3b"
    data_dir: str | None = None
    num_train: int = 1000
    num_dev: int = 500
    num_eval: int = 1000
    batch_size: int = 16
    steps: int = 20000
    eval_every: int = 1000
    eval_batch_size: int = 32
    max_length: int = 128
    dtype: str = "fp16"
    device: str = "cpu"
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    measure_tokenizer: str = "loop"


def make_config(
    protocol: Protocol,
    entry: MethodEntry,
    mode: str,
    *,
    out: str | None = None,
    steps: int | None = None,
    extra_opt: dict[str, Any] | None = None,
) -> FinetuneConfig:
    """The :class:`llm.config.FinetuneConfig` of one (method, mode)."""
    opt = entry.options(mode)
    opt.update(extra_opt or {})
    return FinetuneConfig(
        model=protocol.model,
        task="sst2",
        data_dir=protocol.data_dir,
        num_train=protocol.num_train,
        num_dev=protocol.num_dev,
        num_eval=protocol.num_eval,
        max_length=protocol.max_length,
        method=entry.method,
        mode=mode,
        lora_r=protocol.lora_r,
        lora_alpha=protocol.lora_alpha,
        opt=opt,
        policy=entry.policy,
        policy_opt=dict(entry.policy_opt),
        seed=protocol.seed,
        steps=protocol.steps if steps is None else steps,
        batch_size=protocol.batch_size,
        eval_every=protocol.eval_every,
        eval_batch_size=protocol.eval_batch_size,
        dtype=protocol.dtype,
        device=protocol.device,
        out=out,
        progress=False,
    )


def rebind(run: Any, cfg: FinetuneConfig) -> Any:
    """The same model, data and objective with the optimizer of ``cfg`` (built by the loop's own
    :func:`llm.train.check_method_options` / :func:`llm.train.build_optimizer`)."""
    spec, opts, policy_cls, policy_opts = check_method_options(cfg)
    policy = policy_cls(**policy_opts) if policy_cls is not None else None
    optimizer = build_optimizer(spec, run.named_params, opts, seed=cfg.seed, policy=policy)
    return dataclasses.replace(run, cfg=cfg, spec=spec, optimizer=optimizer)


MEASURE_TOKENIZERS = ("loop", "sst2-bpe")


def measurement_batch(run: Any, protocol: Protocol) -> Any:
    """The fixed minibatch every method of a mode is measured on: the first training batch.

    ``protocol.measure_tokenizer``:

    * ``"loop"``: the run's own batch stream (the tokenizer of the checkpoint, or for ``preset:``
      models the loop's small offline BPE, which splits SST-2 into ~2.5x more tokens than a
      50k-vocabulary BPE: 32 vs 13 tokens per prompt on the 1,000 training examples);
    * ``"sst2-bpe"``: the same examples (same sampling seed, batch order and collation through
      :mod:`llm.data`) encoded with an offline byte-level BPE of up to 32,768 tokens trained on the
      SST-2 training sentences (:func:`llm.models.offline_tokenizer`), so that sequence lengths,
      hence activation memory and forward time, are those of a GPT-2-sized vocabulary, as OPT's
      tokenizer would give. Token ids stay below the model's vocabulary.
    """
    if protocol.measure_tokenizer == "loop":
        return next(run.stream).to(run.device)
    if protocol.measure_tokenizer != "sst2-bpe":
        raise ValueError(f"measure_tokenizer must be one of {MEASURE_TOKENIZERS}, got {protocol.measure_tokenizer!r}")
    task = D.get_task("sst2")
    pool = D.load_examples(task, "train", protocol.data_dir)
    splits = D.sample_splits(pool, protocol.num_train, protocol.num_dev, protocol.num_eval, seed=run.cfg.data_seed)
    vocab = int(getattr(getattr(run.model, "config", None), "vocab_size", 32768) or 32768)
    tok = models.offline_tokenizer(vocab_size=min(32768, vocab), texts=[" ".join(e.texts) for e in pool])
    enc = D.encode_classification(tok, splits.train, task, max_length=protocol.max_length)
    stream = D.BatchStream(enc, D.CausalLMCollator.from_tokenizer(tok), protocol.batch_size, seed=protocol.seed)
    return next(stream).to(run.device)


def _median(xs: Sequence[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def measure_run(
    run: Any, batch: Any, meter: Meter, *, forwards: int = 5, steps: int = 5, time_cap: float = 120.0
) -> dict[str, Any]:
    """Memory and time of one method on a fixed ``batch`` (module docstring).

    ``time_cap``: seconds for the timed steps; fewer than ``steps`` are taken when they would
    exceed it (at least one). Returns a JSON-ready record.
    """
    objective, optimizer = run.objective, run.optimizer
    zo = run.spec.kind == "zo"
    forward = make_closure(objective, batch)
    meter.empty_cache()
    meter.synchronize()
    resident = meter.allocated()

    # forward passes (the first is a warm-up: kernel selection, handles)
    forward()
    meter.synchronize()
    meter.reset_peak()
    fwd_times = [timed(forward, meter)[1] for _ in range(max(1, forwards))]
    inference_peak = meter.peak()

    def one_step() -> torch.Tensor:
        closure = make_closure(objective, batch) if zo else make_backward_closure(objective, batch)
        return optimizer.step(closure)

    meter.reset_peak()
    loss0, warm = timed(one_step, meter)
    first_step_peak = meter.peak()
    meter.reset_peak()
    step_times: list[float] = []
    losses = [float(loss0)]
    t_start = time.perf_counter()
    for _ in range(max(1, steps)):
        if step_times and time.perf_counter() - t_start + statistics.median(step_times) > time_cap:
            break
        loss, dt = timed(one_step, meter)
        step_times.append(dt)
        losses.append(float(loss))
    steady_peak = meter.peak()
    peaks = [b for b in (first_step_peak, steady_peak) if b is not None]
    step_peak = max(peaks) if peaks else None
    state = optimizer_state_bytes(optimizer)
    evals = getattr(optimizer, "evals_per_step", None)
    if not zo:
        evals = FO_FORWARD_EQUIVALENTS
        for _, p in run.named_params:
            p.grad = None
    fwd, stp = _median(fwd_times), _median(step_times)
    return {
        "resident_before_bytes": resident,
        "inference_peak_bytes": inference_peak,
        "step_peak_bytes": step_peak,
        "first_step_peak_bytes": first_step_peak,
        "steady_step_peak_bytes": steady_peak,
        "optimizer_state_bytes": state,
        "memory_kind": meter.memory_kind,
        "peak_resettable": meter.peak_resettable,
        "forward_s": fwd,
        "forward_s_all": fwd_times,
        "first_step_s": warm,
        "step_s": stp,
        "step_s_all": step_times,
        "step_over_forward": (stp / fwd) if fwd and stp else None,
        "step_over_evals_forward": (stp / (evals * fwd)) if fwd and stp and evals else None,
        "forward_passes_per_step": evals,
        "forward_pass_convention": "ZO: closure calls per step; FO: 1 forward + 1 backward counted as 3 forward passes",
        "steps_per_s": (1.0 / stp) if stp else None,
        "forward_passes_per_s": (evals / stp) if stp and evals else None,
        "timed_steps": len(step_times),
        "losses": losses,
        "num_trainable_parameters": int(run.num_trainable),
    }


def measure_mode(
    protocol: Protocol,
    entries: Sequence[MethodEntry],
    mode: str,
    meter: Meter,
    *,
    forwards: int = 5,
    steps: int = 5,
    time_cap: float = 120.0,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure every entry in ``mode`` on one shared model (built once by :func:`llm.train.build_run`).

    A method that fails (not registered, out of memory, an error) gets a record with ``error`` and
    the others go on.
    """
    records: list[dict[str, Any]] = []
    run = None
    batch = None
    for entry in entries:
        rec: dict[str, Any] = {
            "kind": "measure",
            "key": entry.key,
            "label": entry.label,
            "mode": mode,
            "method": entry.method,
            "policy": entry.policy,
            "options": entry.options(mode),
        }
        t0 = time.perf_counter()
        try:
            cfg = make_config(protocol, entry, mode)
            if run is None:
                t_build = time.perf_counter()
                run = build_run(cfg)
                rec["build_s"] = time.perf_counter() - t_build
                batch = measurement_batch(run, protocol)
            else:
                run = rebind(run, cfg)
            assert batch is not None
            rec["batch_shape"] = list(batch.input_ids.shape)
            rec["batch_tokenizer"] = protocol.measure_tokenizer
            rec["batch_real_tokens"] = int(batch.attention_mask.sum())
            rec.update(measure_run(run, batch, meter, forwards=forwards, steps=steps, time_cap=time_cap))
        except Exception as exc:  # noqa: BLE001 - one method's failure is a result, not the end of the run
            rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        finally:
            if run is not None:
                run.optimizer = None  # type: ignore[assignment] # free this method's state before the next one is built
            meter.empty_cache()
        rec["wall_s"] = time.perf_counter() - t0
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    del run, batch
    meter.empty_cache()
    return records


def _loss_curve(records: Iterable[dict[str, Any]], bins: int = 20) -> list[dict[str, Any]]:
    """Mean training loss over ``bins`` consecutive windows of steps."""
    train = [r for r in records if r.get("type") == "train" and r.get("loss") is not None]
    if not train:
        return []
    width = max(1, math.ceil(len(train) / bins))
    out = []
    for i in range(0, len(train), width):
        chunk = train[i : i + width]
        out.append(
            {"steps": [chunk[0]["step"], chunk[-1]["step"]], "mean_loss": sum(r["loss"] for r in chunk) / len(chunk)}
        )
    return out


def train_method(
    protocol: Protocol, entry: MethodEntry, mode: str, run_dir: Path, *, steps: int, keep_checkpoints: bool = False
) -> dict[str, Any]:
    """Train one (method, mode) with :func:`llm.train.train`; returns a JSON-ready summary.

    ``run_dir`` receives the loop's files (config.json, metrics.jsonl, best.pt, last.pt,
    results.json); without ``keep_checkpoints`` the ``.pt`` files are deleted afterwards.
    """
    cfg = make_config(protocol, entry, mode, out=str(run_dir), steps=steps)
    res = train(cfg)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    if not keep_checkpoints:
        for name in ("best.pt", "last.pt"):
            (run_dir / name).unlink(missing_ok=True)
    train_time = res.get("train_time_s") or None
    return {
        "kind": "train",
        "key": entry.key,
        "label": entry.label,
        "mode": mode,
        "method": entry.method,
        "policy": entry.policy,
        "options": cfg.optimizer_options(),
        "steps": res["steps"],
        "eval_accuracy": res["eval_accuracy"],
        "best_dev_accuracy": res["best_dev_accuracy"],
        "best_step": res["best_step"],
        "dev_accuracy_step0": res["dev_accuracy_step0"],
        "forward_passes": res["forward_passes"],
        "train_time_s": train_time,
        "wall_time_s": res["wall_time_s"],
        "steps_per_s": res["steps"] / train_time if train_time else None,
        "forward_passes_per_s": res["forward_passes"] / train_time if train_time else None,
        "peak_memory_bytes": res.get("peak_memory_bytes"),
        "peak_memory_kind": res.get("peak_memory_kind"),
        "loss_first": next((r["loss"] for r in metrics if r.get("type") == "train"), None),
        "loss_curve": _loss_curve(metrics),
        "dev_curve": [
            {"step": r["step"], "accuracy": r["accuracy"]}
            for r in metrics
            if r.get("type") == "eval" and r.get("split") == "dev"
        ],
        "run_dir": str(run_dir),
    }


def load_results(path: Path) -> dict[str, Any]:
    """The results file at ``path`` (empty results where there is none); a clear error for another file."""
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "records" not in data:
            raise ValueError(f"{path} is not a results file of llm.opt_validation")
        return data
    return {"meta": {}, "records": []}


def merge_record(results: dict[str, Any], rec: dict[str, Any]) -> None:
    """Replace the record of the same (kind, key, mode), or append."""
    recs = results["records"]
    for i, old in enumerate(recs):
        if (old.get("kind"), old.get("key"), old.get("mode")) == (rec["kind"], rec["key"], rec["mode"]):
            recs[i] = rec
            return
    recs.append(rec)


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results.json`` and ``tables.md`` in ``out``, each written atomically."""
    atomicio.write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    atomicio.write_text(out / "tables.md", render_tables(results))


def progress_line(rec: dict[str, Any]) -> str:
    """One line per finished measurement or training run, for the console."""
    if rec.get("error"):
        status = rec["error"]
    elif rec["kind"] == "measure":
        status = (
            f"step peak {format_gb(rec.get('step_peak_bytes'))} GB, step {format_value(rec.get('step_s'), '.3f')} s, "
            f"step/forward {format_value(rec.get('step_over_forward'), '.2f')}"
        )
    else:
        status = (
            f"eval acc {format_value(rec.get('eval_accuracy'), '.3f')}, "
            f"{format_value(rec.get('steps_per_s'), '.2f')} steps/s"
        )
    return f"[{rec['kind']}] {rec['label']} ({rec['mode']}): {status}"


def _train_entry(
    protocol: Protocol,
    entry: MethodEntry,
    mode: str,
    out: Path,
    *,
    step_time: float | None,
    time_cap: float,
    keep_checkpoints: bool,
) -> dict[str, Any]:
    """Train one method in one mode; steps are capped to ``0.8 * time_cap / step_time`` when a step time is
    known; an exception becomes an ``error`` record (the other runs go on)."""
    steps = protocol.steps
    note = None
    if step_time:
        affordable = max(1, int(0.8 * time_cap / step_time))
        if affordable < steps:
            steps, note = affordable, f"steps capped from {protocol.steps} to fit --time-cap {time_cap:g} s"
    t0 = time.perf_counter()
    try:
        rec = train_method(
            protocol,
            entry,
            mode,
            out / "runs" / f"{entry.key.replace('+', '-')}-{mode}",
            steps=steps,
            keep_checkpoints=keep_checkpoints,
        )
    except Exception as exc:  # noqa: BLE001 - recorded; the remaining runs go on
        rec = {
            "kind": "train",
            "key": entry.key,
            "label": entry.label,
            "mode": mode,
            "error": f"{type(exc).__name__}: {exc}"[:2000],
        }
    rec["wall_s"] = time.perf_counter() - t0
    if note:
        rec["note"] = note
    return rec


def run_validation(
    protocol: Protocol,
    entries: Sequence[MethodEntry],
    modes: Sequence[str],
    meter: Meter,
    out: Path,
    *,
    command: str,
    measure: bool = True,
    train: bool = True,
    forwards: int = 5,
    measure_steps: int = 5,
    time_cap: float = 120.0,
    keep_checkpoints: bool = False,
) -> dict[str, Any]:
    """Measure and/or train every entry in every mode, merging into ``out/results.json`` and rewriting
    ``out/tables.md`` after each record. Step times measured earlier into the same ``out`` (a
    ``--measure-only`` run) also cap the training steps. Returns the merged results."""
    results = load_results(out / "results.json")
    commands = [c for c in results.get("meta", {}).get("commands", []) if c != command] + [command]
    results["meta"] = {
        "model": protocol.model,
        "dtype": protocol.dtype,
        "device": str(meter.device),
        "memory_kind": meter.memory_kind,
        "protocol": dataclasses.asdict(protocol),
        "environment": environment(meter),
        "reference": JAGUAR_SOURCE,
        "commands": commands,
    }

    def record(rec: dict[str, Any]) -> None:
        merge_record(results, rec)
        write_results(out, results)
        print(progress_line(rec), flush=True)

    write_results(out, results)
    for mode in modes:
        step_time: dict[str, float] = {
            k: r["step_s"]
            for (k, m), r in index_records(results["records"], "measure").items()
            if m == mode and r.get("step_s")
        }
        if measure:
            for rec in measure_mode(
                protocol,
                entries,
                mode,
                meter,
                forwards=forwards,
                steps=measure_steps,
                time_cap=time_cap,
                on_record=record,
            ):
                if rec.get("step_s"):
                    step_time[rec["key"]] = rec["step_s"]
        if not train:
            continue
        for entry in entries:
            rec = _train_entry(
                protocol,
                entry,
                mode,
                out,
                step_time=step_time.get(entry.key),
                time_cap=time_cap,
                keep_checkpoints=keep_checkpoints,
            )
            meter.empty_cache()
            record(rec)
    return results
