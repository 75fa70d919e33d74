"""OPT-1.3B / SST-2 validation: the JAGUAR paper's Tables 2 and 3, measured with our optimizers.

One command runs the peers' protocol (ZO-Bench / JAGUAR, ``docs/theory.md`` §6.2):
OPT-1.3B on SST-2, 1,000 train / 500 dev / 1,000 eval examples, batch 16, 20,000 steps,
evaluation every 1,000 steps, best-dev checkpoint, full fine-tuning (FT) and LoRA (r 8, alpha 16),
for ZO-SGD, ZO-SGD-Sign, ZO-AdaMM, JAGUAR SignSGD, ZO-Muon, JAGUAR Muon, AdaNAGED, the direction
policies (ZO-SGD + LDSD, ZO-SGD + GV) and FO-SGD, and writes

* ``results.json``  every measurement and training summary (merged with an existing file in ``--out``,
  so a ``--measure-only`` run and a training run build up one set of tables);
* ``tables.md``     accuracy in the format of JAGUAR Table 2 and peak memory in the format of JAGUAR
  Table 3 (rows = methods, columns FT / LoRA, GB at the run's dtype), the paper's numbers beside ours,
  plus a throughput table (forward time, step time, their ratio, steps/s, forward passes/s).

This module is orchestration and table writing only: runs are built by :func:`llm.train.build_run`
(the data protocol, the model, LoRA, the objective, the optimizer from the registry), trained by
:func:`llm.train.train` (the project's loop: best-dev checkpoint, eval split, metrics.jsonl), and a
step is one ``optimizer.step(closure)`` with the closures of :mod:`llm.objective`.

Measurement (``--measure-only``, or before training). Per mode, one model is built and shared by
every method (the weights' values do not change memory or time); per method:

* *inference peak*: ``max_memory_allocated`` over ``--measure-forwards`` forward passes of the ZO closure
  (eval mode, ``torch.inference_mode``) after ``reset_peak_memory_stats``;
* *step peak*: the larger of the *first-step peak* (``max_memory_allocated`` over the first optimizer
  step after ``reset_peak_memory_stats``: lazily allocated state and one-time checks count) and the
  *steady peak* (reset again, over the timed steps): the number comparable with JAGUAR Table 3,
  "peak memory" of a training run; both parts are recorded;
* *forward time* and *step time*: medians, with the device synchronised around each call; their ratio
  is the price of a step in forward passes (a two-point ZO step costs at least 2).

The CUDA-only calls live in :class:`CudaMeter`; :class:`CpuMeter` measures the process's resident
set (``VmHWM``, reset through ``/proc/self/clear_refs``) so that the whole script runs, and is tested,
on a CPU at tiny size.

Reference numbers: Petrov, Evseev, Veprikov, Beznosikov et al., "Leveraging Coordinate Momentum in
SignSGD and Muon: Memory-Optimized Zero-Order LLM Fine-Tuning" (JAGUAR; arXiv 2506.04430), Tables 2
and 3 of the PDF committed to ``intsystems/ZO-LLM-FineTuning`` @ 0da8dd2, as quoted in
``docs/theory.md`` §6.3. Their baselines' accuracies are copied from
ZO-Bench (Zhang et al., ICML 2024); their memory is "half precision (F16)" for ZO and mixed precision
(fp16 + fp32 master weights) for FO.

Example (the exact commands of the committed results are in ``llm/results/opt13b/README.md``)::

    python -m llm.opt_validation --model preset:1.3b --data-dir data/sst2 --measure-only \\
        --device cuda --dtype fp16 --out llm/results/opt13b
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llm.memory import CudaMeter, Meter, make_meter, optimizer_state_bytes
from zotheory import atomicio

__all__ = [
    "JAGUAR_SOURCE",
    "JAGUAR_TABLE2",
    "JAGUAR_TABLE3",
    "MethodEntry",
    "METHODS",
    "DEFAULT_METHODS",
    "DeviceMeter",
    "CpuMeter",
    "CudaMeter",
    "make_meter",
    "measure_mode",
    "train_method",
    "render_tables",
    "main",
]

# --------------------------------------------------------------------------------------------- reference
JAGUAR_SOURCE = (
    "JAGUAR paper (Petrov et al. 2025, arXiv 2506.04430), PDF in intsystems/ZO-LLM-FineTuning @ 0da8dd2, "
    "Tables 2 and 3; quoted in docs/theory.md §6.3"
)

#: JAGUAR Table 2, OPT-1.3B columns: test accuracy (%) on SST-2, (FT, LoRA), verbatim strings.
#: Baseline rows are copied by the paper from ZO-Bench; "ZO-SignSGD" there is ZO-Bench's ZO-SGD-Sign.
JAGUAR_TABLE2: dict[str, tuple[str, str]] = {
    "FO-SGD": ("91.1", "93.6"),
    "Forward-Grad": ("90.3", "90.3"),
    "ZO-SGD": ("90.8", "90.1"),
    "Acc-ZOM": ("85.2", "91.3"),
    "ZO-SGD-Cons": ("88.3", "90.5"),
    "ZO-SignSGD": ("87.2", "91.5"),
    "ZO-AdaMM": ("84.4", "92.3"),
    "LeZO": ("85.1", "92.3"),
    "JAGUAR SignSGD": ("94.0 ± 0.1", "92.5 ± 0.5"),
    "ZO-Muon": ("86.5 ± 0.1", "93.5 ± 0.1"),
    "JAGUAR Muon": ("72.5 ± 0.1", "94.0 ± 0.1"),
}

#: JAGUAR Table 3: peak memory (GB), OPT-1.3B, half precision, SST-2, (FT, LoRA).
JAGUAR_TABLE3: dict[str, tuple[float, float]] = {
    "FO-SGD": (12.246, 5.855),
    "ZO-SGD": (4.171, 4.125),
    "ZO-AdaMM": (9.046, 4.132),
    "JAGUAR SignSGD": (4.172, 4.128),
    "ZO-Muon": (4.177, 4.130),
    "JAGUAR Muon": (4.179, 4.132),
}

MODES = ("ft", "lora")


# --------------------------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class MethodEntry:
    """A row of the tables: a registry method (or ``fo-sgd``), an optional direction policy, and its
    options per mode. ``paper``: the JAGUAR row it is compared with (``None``: no published number).

    The options are the script's defaults, taken from the grids of ZO-Bench / MeZO / JAGUAR
    (``docs/theory.md`` §6.2) where they give one; they are starting points, not tuned
    values: the paper numbers come from grid searches (``--opt`` overrides them).
    """

    key: str
    label: str
    method: str
    opt_ft: dict[str, Any]
    opt_lora: dict[str, Any]
    policy: str | None = None
    policy_opt: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None

    def options(self, mode: str) -> dict[str, Any]:
        return dict(self.opt_ft if mode == "ft" else self.opt_lora)


METHODS: dict[str, MethodEntry] = {
    e.key: e
    for e in (
        # ZO-Bench FO-SGD grid FT {1e-3..1e-7}, LoRA {1e-2..1e-6}
        MethodEntry("fo-sgd", "FO-SGD", "fo-sgd", {"lr": 1e-5}, {"lr": 1e-3}, paper="FO-SGD"),
        # MeZO: FT lr 1e-6/1e-7, eps 1e-3; LoRA lr 1e-4/5e-5, eps 1e-2
        MethodEntry("zo-sgd", "ZO-SGD", "zo-sgd", {"lr": 1e-6, "eps": 1e-3}, {"lr": 1e-4, "eps": 1e-2}, paper="ZO-SGD"),
        # ZO-Bench ZO-SGD-Sign (sign of the scalar times z): FT {1e-4,1e-6,1e-8} x eps {1e-3,1e-5}
        MethodEntry(
            "zo-sgd-sign",
            "ZO-SGD-Sign",
            "zo-sgd-sign",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-5, "eps": 1e-2},
            paper="ZO-SignSGD",
        ),
        # ZO-Bench ZO-Adam FT {1e-4..1e-8}, LoRA {1e-4,1e-5,1e-6}; AMSGrad variant = ZO-AdaMM
        MethodEntry(
            "zo-adamm", "ZO-AdaMM", "zo-adamm", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-4, "eps": 1e-2}, paper="ZO-AdaMM"
        ),
        # JAGUAR: tau 1e-3, lr 1e-3 for JAGUAR SignSGD in LoRA (the paper's one stated value)
        MethodEntry(
            "jaguar-signsgd",
            "JAGUAR SignSGD",
            "jaguar-signsgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
            paper="JAGUAR SignSGD",
        ),
        MethodEntry(
            "zo-muon", "ZO-Muon", "zo-muon", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-3, "eps": 1e-2}, paper="ZO-Muon"
        ),
        MethodEntry(
            "jaguar-muon",
            "JAGUAR Muon",
            "jaguar-muon",
            {"lr": 1e-5, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
            paper="JAGUAR Muon",
        ),
        # parameter-free: its own step sizes (lr is a multiplier, left at 1)
        MethodEntry("adanaged", "AdaNAGED", "adanaged", {}, {}),
        MethodEntry(
            "zo-sgd+ldsd",
            "ZO-SGD + LDSD",
            "zo-sgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-4, "eps": 1e-2},
            policy="ldsd",
        ),
        MethodEntry(
            "zo-sgd+gv",
            "ZO-SGD + GV",
            "zo-sgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-4, "eps": 1e-2},
            policy="gv",
        ),
        # the rest of the registry: measured by --measure-only (every method has a row), trained on request.
        # Step sizes: the ZO-SGD defaults for the SGD-type methods, 1 (a multiplier) for the parameter-free ones.
        MethodEntry(
            "zo-sgd-mmt",
            "ZO-SGD-MMT",
            "zo-sgd-mmt",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-4, "eps": 1e-2},
            paper="ZO-SGD-MMT",
        ),
        MethodEntry(
            "zo-signsgd",
            "ZO-SignSGD (coordinate-wise)",
            "zo-signsgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-5, "eps": 1e-2},
        ),
        MethodEntry("zo-adam", "ZO-Adam", "zo-adam", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-4, "eps": 1e-2}),
        MethodEntry(
            "jaguar-signsgd-block",
            "JAGUAR SignSGD (block)",
            "jaguar-signsgd-block",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
        ),
        MethodEntry(
            "jaguar-muon-block",
            "JAGUAR Muon (block)",
            "jaguar-muon-block",
            {"lr": 1e-5, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
        ),
        MethodEntry(
            "zo-muon-orthogonal",
            "ZO-Muon (semi-orthogonal)",
            "zo-muon-orthogonal",
            {"lr": 1e-5, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-2},
        ),
        MethodEntry("zo-lmo", "ZO-LMO", "zo-lmo", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-3, "eps": 1e-2}),
        MethodEntry("adanaged-alias", "AdaNAGED (ALIAS rule)", "adanaged-alias", {}, {}),
        MethodEntry("zo-dog", "ZO-DoG", "zo-dog", {}, {}),
        MethodEntry("zo-poem", "ZO-POEM", "zo-poem", {}, {}),
        MethodEntry("zo-alias-sign", "ZO-ALIAS-Sign", "zo-alias-sign", {}, {}),
    )
}

#: The rows of the JAGUAR tables (trained by default); ``--methods all`` (the default of ``--measure-only``)
#: adds every other registry method, so each registered method gets a memory/time row.
DEFAULT_METHODS: tuple[str, ...] = (
    "fo-sgd",
    "zo-sgd",
    "zo-sgd-sign",
    "zo-adamm",
    "jaguar-signsgd",
    "zo-muon",
    "jaguar-muon",
    "adanaged",
    "zo-sgd+ldsd",
    "zo-sgd+gv",
)


def parse_methods(text: str) -> list[MethodEntry]:
    """``"default"`` (:data:`DEFAULT_METHODS`), ``"all"`` (every :data:`METHODS` entry) or a comma list of
    :data:`METHODS` keys (``zo-sgd,jaguar-signsgd,zo-sgd+gv``)."""
    if text.strip().lower() == "default":
        return [METHODS[k] for k in DEFAULT_METHODS]
    if text.strip().lower() == "all":
        return list(METHODS.values())
    out: list[MethodEntry] = []
    for raw in text.split(","):
        key = raw.strip().lower()
        if not key:
            continue
        if key not in METHODS:
            raise ValueError(f"unknown method {raw.strip()!r}; known: {', '.join(METHODS)}")
        out.append(METHODS[key])
    if not out:
        raise ValueError(f"no methods in {text!r}")
    return out


def parse_modes(text: str) -> list[str]:
    modes = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a comma list of {MODES}, got {text!r}")
    return modes


# --------------------------------------------------------------------------------------------- devices
#: the meters of :mod:`llm.memory` under the names this script has always exported
DeviceMeter = Meter
CpuMeter = Meter


def timed(fn: Callable[[], Any], meter: DeviceMeter) -> tuple[Any, float]:
    """``(fn(), seconds)`` with the device synchronised before and after."""
    meter.synchronize()
    t0 = time.perf_counter()
    out = fn()
    meter.synchronize()
    return out, time.perf_counter() - t0


def environment(meter: DeviceMeter) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------- configs
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
) -> Any:
    """The :class:`llm.config.FinetuneConfig` of one (method, mode)."""
    from llm.config import FinetuneConfig

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


def rebind(run: Any, cfg: Any) -> Any:
    """The same model, data and objective with the optimizer of ``cfg`` (built by the loop's own
    :func:`llm.train.check_method_options` / :func:`llm.train.build_optimizer`)."""
    from llm.train import build_optimizer, check_method_options

    spec, opts, policy_cls, policy_opts = check_method_options(cfg)
    policy = policy_cls(**policy_opts) if policy_cls is not None else None
    optimizer = build_optimizer(spec, run.named_params, opts, seed=cfg.seed, policy=policy)
    return dataclasses.replace(run, cfg=cfg, spec=spec, optimizer=optimizer)


# --------------------------------------------------------------------------------------------- measuring
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
    from llm import data as D
    from llm import models

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
    run: Any, batch: Any, meter: DeviceMeter, *, forwards: int = 5, steps: int = 5, time_cap: float = 120.0
) -> dict[str, Any]:
    """Memory and time of one method on a fixed ``batch`` (module docstring).

    ``time_cap``: seconds for the timed steps; fewer than ``steps`` are taken when they would
    exceed it (at least one). Returns a JSON-ready record.
    """
    from llm.objective import make_backward_closure, make_closure

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
        from llm.train import FO_FORWARD_EQUIVALENTS

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
    meter: DeviceMeter,
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
    from llm.train import build_run

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
                run.optimizer = None  # free this method's state before the next one is built
            meter.empty_cache()
        rec["wall_s"] = time.perf_counter() - t0
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    del run, batch
    meter.empty_cache()
    return records


# --------------------------------------------------------------------------------------------- training
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
    from llm.train import read_metrics, train

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


# --------------------------------------------------------------------------------------------- tables
def _gb(b: int | None) -> str:
    return "—" if b is None else f"{b / 1e9:.3f}"


def _gib(b: int | None) -> str:
    return "—" if b is None else f"{b / 2**30:.3f}"


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _index(records: Iterable[dict[str, Any]], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["key"], r["mode"]): r for r in records if r.get("kind") == kind}


def _row_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    seen = [r["key"] for r in records]
    ordered = [k for k in METHODS if k in seen]
    return ordered + sorted({k for k in seen if k not in METHODS})


def _label(key: str, records: Sequence[dict[str, Any]]) -> str:
    if key in METHODS:
        return METHODS[key].label
    return next(r["label"] for r in records if r["key"] == key)


def _paper_key(key: str) -> str | None:
    return METHODS[key].paper if key in METHODS else None


def _memory_kind(results: dict[str, Any]) -> str | None:
    kinds = [
        r.get("memory_kind") for r in results.get("records", []) if r.get("kind") == "measure" and r.get("memory_kind")
    ]
    return results.get("meta", {}).get("memory_kind") or (kinds[0] if kinds else None)


def render_tables(results: dict[str, Any]) -> str:
    """Markdown: accuracy (JAGUAR Table 2 format), peak memory (Table 3 format), throughput."""
    records: list[dict[str, Any]] = results.get("records", [])
    meta = results.get("meta", {})
    env = meta.get("environment", {})
    dtype = meta.get("dtype", "fp16")
    lines: list[str] = []
    lines.append(f"# OPT validation: {meta.get('model', '?')} on SST-2 ({dtype}, {env.get('device', '?')})")
    lines.append("")
    lines.append(f'Reference columns: {JAGUAR_SOURCE}. "—": no number (not run, or not in the paper).')
    if str(meta.get("model", "")).startswith("preset:"):
        lines.append(
            "Model weights are **random** (offline architecture preset): accuracies are chance level "
            "(~50%) and say nothing about the methods; memory and time depend on shapes only and are comparable."
        )
    lines.append("")

    meas = _index(records, "measure")
    train = _index(records, "train")
    keys = _row_keys(records)

    # Table 2 format
    lines.append("## Test accuracy (%), SST-2 (format of JAGUAR Table 2)")
    lines.append("")
    lines.append("| Method | FT (ours) | FT (JAGUAR) | LoRA (ours) | LoRA (JAGUAR) |")
    lines.append("|---|---|---|---|---|")
    for key in keys:
        paper = JAGUAR_TABLE2.get(_paper_key(key) or "", ("—", "—"))
        cells = []
        for i, mode in enumerate(MODES):
            r = train.get((key, mode))
            if r is None:
                ours = "—"
            elif r.get("error"):
                ours = "error"
            else:
                ours = (
                    f"{100 * r['eval_accuracy']:.1f} ({r['steps']} steps)"
                    if r.get("eval_accuracy") is not None
                    else "—"
                )
            cells += [ours, paper[i]]
        lines.append(f"| {_label(key, records)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Ours: eval-split accuracy of the best-dev checkpoint after the steps shown (one seed); JAGUAR: 20,000 "
        "steps, mean ± std over 3 seeds for their methods, baselines copied from ZO-Bench."
    )
    lines.append("")

    # Table 3 format
    lines.append(f"## Peak memory (GB = 1e9 bytes), {dtype} (format of JAGUAR Table 3)")
    lines.append("")
    lines.append("| Method | FT (ours) | FT (JAGUAR) | LoRA (ours) | LoRA (JAGUAR) |")
    lines.append("|---|---|---|---|---|")
    for key in keys:
        paper = JAGUAR_TABLE3.get(_paper_key(key) or "")
        cells = []
        for i, mode in enumerate(MODES):
            r = meas.get((key, mode))
            if r is None:
                ours = "—"
            elif r.get("error"):
                ours = "error"
            else:
                ours = _gb(r.get("step_peak_bytes"))
            cells += [ours, f"{paper[i]:.3f}" if paper else "—"]
        lines.append(f"| {_label(key, records)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Ours: `torch.cuda.max_memory_allocated` over one warm-up step and the timed steps after "
        '`reset_peak_memory_stats` (state allocated lazily counts). JAGUAR: "standard PyTorch utilities", unit '
        "not stated (GB or GiB; the GiB value of ours is in the throughput table); their FO-SGD is mixed precision "
        "(fp32 master weights), ours is pure fp16."
        if _memory_kind(results) == CudaMeter.memory_kind
        else "Ours: process peak resident set (CPU run; not comparable with GPU numbers)."
    )
    lines.append("")

    # throughput
    lines.append("## Memory and throughput per step")
    lines.append("")
    lines.append(
        "| Method | mode | trainable | fwd/step | forward ms | step ms | step/forward | steps/s | fwd passes/s "
        "| inference peak GB | first-step peak GB | steady peak GB | step peak GiB | state GB | batch (N×T) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in keys:
        for mode in MODES:
            r = meas.get((key, mode))
            if r is None:
                continue
            if r.get("error"):
                lines.append(
                    f"| {_label(key, records)} | {mode} | error: {r['error'][:120].replace('|', '/')} "
                    "| | | | | | | | | | | | |"
                )
                continue
            shape = r.get("batch_shape") or ["?", "?"]
            lines.append(
                f"| {_label(key, records)} | {mode} | {r['num_trainable_parameters']:,} | {r['forward_passes_per_step']} "
                f"| {_fmt(r['forward_s'] and 1e3 * r['forward_s'], '.1f')} | {_fmt(r['step_s'] and 1e3 * r['step_s'], '.1f')} "
                f"| {_fmt(r['step_over_forward'], '.2f')} | {_fmt(r['steps_per_s'], '.2f')} | {_fmt(r['forward_passes_per_s'], '.1f')} "
                f"| {_gb(r['inference_peak_bytes'])} | {_gb(r.get('first_step_peak_bytes'))} "
                f"| {_gb(r.get('steady_step_peak_bytes'))} | {_gib(r['step_peak_bytes'])} "
                f"| {_gb(r['optimizer_state_bytes'])} | {shape[0]}×{shape[1]} |"
            )
    lines.append("")
    lines.append(
        "fwd/step: forward passes per step (ZO: closure calls; FO: forward + backward = 3). step/forward: "
        "median step time over median forward time (same batch). first-step peak: over the first optimizer "
        "step (lazy state, one-time checks); steady peak: over the timed steps after a second reset; the "
        "Table 3 column is the larger. state: the optimizer's declared state "
        "(`state_bytes()`, direction-policy state included; fp32 for fp16 parameters)."
    )

    trained = [r for r in records if r.get("kind") == "train" and not r.get("error")]
    if trained:
        lines.append("")
        lines.append("## Training runs: throughput and loss")
        lines.append("")
        lines.append(
            "| Method | mode | steps | steps/s | fwd passes/s | first loss | last-window loss | dev acc (step 0 → best) | peak GB |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in trained:
            curve = r.get("loss_curve") or []
            last = curve[-1]["mean_loss"] if curve else None
            d0, best = r.get("dev_accuracy_step0"), r.get("best_dev_accuracy")
            dev = "—" if d0 is None or best is None else f"{100 * d0:.1f} → {100 * best:.1f}"
            lines.append(
                f"| {r['label']} | {r['mode']} | {r['steps']} | {_fmt(r.get('steps_per_s'), '.2f')} "
                f"| {_fmt(r.get('forward_passes_per_s'), '.1f')} | {_fmt(r.get('loss_first'), '.4f')} | {_fmt(last, '.4f')} "
                f"| {dev} | {_gb(r.get('peak_memory_bytes'))} |"
            )
    errors = [r for r in records if r.get("error")]
    if errors:
        lines.append("")
        lines.append("## Errors")
        lines.append("")
        for r in errors:
            lines.append(f"- {r['label']} ({r['mode']}, {r['kind']}): `{r['error'][:400]}`")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- results file
def load_results(path: Path) -> dict[str, Any]:
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
    atomicio.write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    atomicio.write_text(out / "tables.md", render_tables(results))


# --------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.opt_validation",
        description="OPT-1.3B / SST-2 validation: JAGUAR Tables 2 (accuracy) and 3 (memory), measured with zotheory.",
    )
    p.add_argument(
        "--model", default="preset:1.3b", help="local checkpoint folder or preset:NAME (random weights) [preset:1.3b]"
    )
    p.add_argument(
        "--data-dir", default=None, help="folder with SST-2 train.tsv/dev.tsv (omit: the `datasets` library)"
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma list of {', '.join(METHODS)}; or default (the JAGUAR table rows, the default for "
        "training) or all (every registry method, the default of --measure-only)",
    )
    p.add_argument("--modes", default="ft,lora", help="comma list of ft, lora [ft,lora]")
    p.add_argument("--steps", type=int, default=20000, help="training steps per run [20000]")
    p.add_argument("--eval-every", type=int, default=1000, help="dev evaluation interval [1000]")
    p.add_argument("--measure-only", action="store_true", help="memory and step time only, no training")
    p.add_argument("--no-measure", action="store_true", help="train only")
    p.add_argument("--measure-steps", type=int, default=5, help="timed optimizer steps per method [5]")
    p.add_argument("--measure-forwards", type=int, default=5, help="timed forward passes per method [5]")
    p.add_argument(
        "--time-cap",
        type=float,
        default=120.0,
        help="seconds per method: caps the timed steps, and the training steps when a step time is known [120]",
    )
    p.add_argument("--num-train", type=int, default=1000)
    p.add_argument("--num-dev", type=int, default=500)
    p.add_argument("--num-eval", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    p.add_argument(
        "--measure-tokenizer",
        default="auto",
        choices=("auto", *MEASURE_TOKENIZERS),
        help="tokenizer of the measurement batch; auto: sst2-bpe for preset: models, else loop [auto]",
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep best.pt/last.pt of training runs")
    p.add_argument("--out", required=True, help="output folder: results.json, tables.md, runs/")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        entries = parse_methods(args.methods or ("all" if args.measure_only else "default"))
        modes = parse_modes(args.modes)
        if args.measure_only and args.no_measure:
            raise ValueError("--measure-only and --no-measure exclude each other")
        for name in ("steps", "measure_steps", "measure_forwards", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if not (args.time_cap > 0):
            raise ValueError(f"--time-cap must be > 0, got {args.time_cap}")
        meter = make_meter(args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    protocol = Protocol(
        model=args.model,
        data_dir=args.data_dir,
        num_train=args.num_train,
        num_dev=args.num_dev,
        num_eval=args.num_eval,
        batch_size=args.batch_size,
        steps=args.steps,
        eval_every=args.eval_every,
        max_length=args.max_length,
        dtype=args.dtype,
        device=str(meter.device),
        seed=args.seed,
        measure_tokenizer=(
            ("sst2-bpe" if args.model.startswith("preset:") else "loop")
            if args.measure_tokenizer == "auto"
            else args.measure_tokenizer
        ),
    )
    out = Path(args.out)
    results = load_results(out / "results.json")
    command = "python -m llm.opt_validation " + " ".join(sys.argv[1:] if argv is None else argv)
    commands = [c for c in results.get("meta", {}).get("commands", []) if c != command] + [command]
    results["meta"] = {
        "model": args.model,
        "dtype": args.dtype,
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
        status = rec.get("error") or (
            f"step peak {_gb(rec.get('step_peak_bytes'))} GB, step {_fmt(rec.get('step_s'), '.3f')} s, "
            f"step/forward {_fmt(rec.get('step_over_forward'), '.2f')}"
            if rec["kind"] == "measure"
            else f"eval acc {_fmt(rec.get('eval_accuracy'), '.3f')}, {_fmt(rec.get('steps_per_s'), '.2f')} steps/s"
        )
        print(f"[{rec['kind']}] {rec['label']} ({rec['mode']}): {status}", flush=True)

    write_results(out, results)
    for mode in modes:
        # step times measured earlier into the same --out (a --measure-only run) also cap training
        step_time: dict[str, float] = {
            k: r["step_s"]
            for (k, m), r in _index(results["records"], "measure").items()
            if m == mode and r.get("step_s")
        }
        if not args.no_measure:
            for rec in measure_mode(
                protocol,
                entries,
                mode,
                meter,
                forwards=args.measure_forwards,
                steps=args.measure_steps,
                time_cap=args.time_cap,
                on_record=record,
            ):
                if rec.get("step_s"):
                    step_time[rec["key"]] = rec["step_s"]
        if args.measure_only:
            continue
        for entry in entries:
            steps = args.steps
            note = None
            if entry.key in step_time:
                affordable = max(1, int(0.8 * args.time_cap / step_time[entry.key]))
                if affordable < steps:
                    steps, note = affordable, f"steps capped from {args.steps} to fit --time-cap {args.time_cap:g} s"
            t0 = time.perf_counter()
            try:
                rec = train_method(
                    protocol,
                    entry,
                    mode,
                    out / "runs" / f"{entry.key.replace('+', '-')}-{mode}",
                    steps=steps,
                    keep_checkpoints=args.keep_checkpoints,
                )
            except Exception as exc:  # noqa: BLE001
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
            meter.empty_cache()
            record(rec)
    print(render_tables(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
