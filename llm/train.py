"""The fine-tuning loop: zotheory's optimizers, unchanged, on Hugging Face models.

A plain loop, no fork of the Hugging Face Trainer::

    for step in 1..steps:
        batch = next(stream)                          # deterministic, resumable order
        ZO:  loss = optimizer.step(make_closure(objective, batch))
             # eval mode, torch.inference_mode, no backward; the optimizer calls the
             # closure optimizer.evals_per_step times
        FO:  loss = optimizer.step(make_backward_closure(objective, batch))
             # torch SGD / Adam with backpropagation, same loss function (eval mode)
        log {step, loss, forward passes, lr, wall time} to metrics.jsonl
        every eval_every steps: dev accuracy -> best-dev weights (best.pt), resume state (last.pt)
    final: load best.pt, accuracy on the eval split -> results.json

Counting forward passes (exact: the closures count their own calls).

* ZO: one closure call = one forward pass over the minibatch; a step costs
  ``optimizer.evals_per_step`` of them (two for two-point ZO-SGD).
* FO: one closure call = one forward + one backward. Convention: a backward pass counts
  as **two** forward passes (its cost in FLOPs: Kaplan et al. 2020, "Scaling laws",
  C_train ~ 6N per token vs C_forward ~ 2N; the usual accounting when ZO and FO budgets
  are compared), so an FO step costs 3 forward passes. ``forward_passes`` in the logs
  and results is this forward-equivalent count; ``forward_calls`` and
  ``backward_calls`` are the raw counts.
* Evaluation forward passes (one per evaluation minibatch) are reported separately as
  ``eval_forward_passes`` and never count towards the training budget.

Output directory (all files written atomically, see :mod:`llm.checkpoint`)::

    config.json      the resolved configuration
    metrics.jsonl    one JSON record per training step ("train") and per evaluation ("eval"); a train
                     record carries "step_size" for optimizers that set their own (AdaNAGED's gamma),
                     and "probe" on a step that ran one of AdaNAGED's step-size probes
    last.pt          resume state: trainable tensors, optimizer state, data order, step, RNG
    best.pt          trainable tensors of the best dev accuracy so far
    results.json     final numbers (written once, at the end)

Resume (``resume=True``) restores ``last.pt`` and truncates ``metrics.jsonl`` to the
checkpoint's step; on the CPU the resumed run reproduces the uninterrupted one bit for
bit (same parameters, same metric records apart from wall-clock fields).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from llm.checkpoint import (
    FORMAT,
    VERSION,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from llm.config import FinetuneConfig
from llm.data import iter_batches
from llm.distributed import (
    CommunicationLog,
    RankFailure,
    close_process_group,
    init_process_group_from_env,
    replicas_identical,
)
from llm.memory import optimizer_state_bytes, peak_memory
from llm.methods import (
    FIRST_ORDER_METHODS,
    POLICIES,
    MethodSpec,
    available_methods,
    build_optimizer,
    check_method_options,
    method_options,
    resolve_method,
    resolve_policy,
)
from llm.objective import make_backward_closure, make_closure
from llm.run import _START_FILES, DataParallel, Run, build_run, check_output_dir, parse_device
from llm.step import (  # the step's closure and accounting live in llm.step (shared with llm.hf_trainer)
    FO_FORWARD_EQUIVALENTS,
    fo_step,
    zo_step,
)
from zotheory import atomicio
from zotheory.atomicio import write_text as atomic_write_text
from zotheory.estimators import NonFiniteLossError

__all__ = [
    "FIRST_ORDER_METHODS",
    "POLICIES",
    "MethodSpec",
    "resolve_method",
    "available_methods",
    "resolve_policy",
    "method_options",
    "check_method_options",
    "build_optimizer",
    "Run",
    "build_run",
    "TrainerState",
    "train",
    "train_loop",
    "evaluate",
    "peak_memory",
    "read_metrics",
    "FO_FORWARD_EQUIVALENTS",
    "TrainingDiverged",
    "check_output_dir",
    "parse_device",
]


class TrainingDiverged(RuntimeError):
    """The run stopped: a non-finite loss or update, or too many skipped steps. The message is one
    line with the step, the method, the advice and the last good checkpoint (``--resume`` continues there)."""


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def evaluate(
    objective: nn.Module,
    encoded: Sequence[Any],
    collate: Callable[[Sequence[Any]], Any],
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Accuracy and mean loss on ``encoded`` (eval mode, inference mode); counts forward passes."""
    served: list[Any] = []  # the batches handed to the objective: one forward pass each

    def counted() -> Iterator[Any]:
        for b in iter_batches(encoded, collate, batch_size):
            served.append(None)
            yield b

    # nn.Module.__getattr__ types attributes as Tensor | Module; the llm.objective classes define evaluate()
    res = objective.evaluate(counted(), device=device)  # type: ignore[operator]
    return {
        "accuracy": res.accuracy,
        "loss": res.loss,
        "num_examples": res.num_examples,
        "forward_passes": len(served),
    }


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


@dataclass
class TrainerState:
    """Counters and best-so-far bookkeeping (saved in ``last.pt``)."""

    step: int = 0
    forward_passes: int = 0  # forward-equivalents of training (module docstring)
    forward_calls: int = 0
    backward_calls: int = 0
    eval_forward_passes: int = 0
    best_dev_accuracy: float | None = None
    best_step: int | None = None
    dev_accuracy_step0: float | None = None
    elapsed: float = 0.0  # wall seconds of earlier sessions of this run
    train_time: float = 0.0  # seconds inside optimizer steps
    skipped: int = 0  # steps skipped by the optimizer (on_nonfinite="skip")
    consecutive_skipped: int = 0
    resumes: list[dict[str, Any]] = field(default_factory=list)  # {"step", "changed": {key: [old, new]}}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerState:
        return cls(**d)


def _float(x: Any) -> float:
    v = float(x.detach()) if isinstance(x, torch.Tensor) else float(x)
    return v


def _current_lr(optimizer: torch.optim.Optimizer) -> float | None:
    lr = optimizer.param_groups[0].get("lr")
    if isinstance(lr, torch.Tensor):
        return float(lr)
    return None if lr is None else float(lr)


def _step_size_field(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``{"step_size": [...]}`` for an optimizer that chooses its own step size and reports it through
    ``step_sizes()`` (AdaNAGED: ``gamma_t`` per unit, while its ``lr`` stays a fixed multiplier), else ``{}``;
    plus ``"probe"`` on a step that ran a step-size probe (AdaNAGED's ``probe_record()``)."""
    sizes = getattr(optimizer, "step_sizes", None)
    field: dict[str, Any] = {"step_size": [float(v) for v in sizes()]} if callable(sizes) else {}
    record = getattr(optimizer, "probe_record", None)
    probe = record() if callable(record) else None
    return field | ({"probe": probe} if probe is not None else {})


class _MetricsLog:
    """Append-only JSONL, flushed per record; ``truncate(step)`` rewrites it atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._f: TextIO | None = None

    def open(self, resume_step: int | None) -> None:
        if self.path is None:
            return
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
            self.records = kept
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._f is not None:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a torn last line, from a hard kill, is dropped)."""
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: corrupt metrics record") from None
    return out


# Config fields that may differ between a run and its resumption.
_RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "max_forward_passes",
        "progress",
        "threads",
        "out",
        "save_every",
        "device",
        "max_consecutive_skips",
        "max_skips",
        "allow_download",
        "dist_timeout",
    }
)
#: Of those, the ones that change what the run computes or reports, recorded in ``results.json["resumes"]``.
_RECORDED_CHANGES = ("steps", "max_forward_passes", "save_every", "device", "max_consecutive_skips", "max_skips")


def _trainable_state(named: Sequence[tuple[str, nn.Parameter]]) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in named}


def _load_trainable(named: Sequence[tuple[str, nn.Parameter]], tensors: dict[str, torch.Tensor], where: str) -> None:
    names = [n for n, _ in named]
    if sorted(names) != sorted(tensors):
        missing = sorted(set(names) - set(tensors))
        extra = sorted(set(tensors) - set(names))
        raise ValueError(
            f"{where}: trainable tensors do not match the model (missing {missing[:5]}, unexpected {extra[:5]})"
        )
    with torch.no_grad():
        for n, p in named:
            t = tensors[n]
            if t.shape != p.shape:
                raise ValueError(f"{where}: tensor {n!r} has shape {tuple(t.shape)}, the model's is {tuple(p.shape)}")
            p.copy_(t)


@dataclass
class _Loop:
    """One training session's state, passed explicitly to the loop's steps (no shared closures).

    ``last_saved``: step of the newest ``last.pt`` (named in error messages); ``best_in_memory``: the
    best-dev trainable tensors when there is no output folder to hold ``best.pt``.
    """

    run: Run
    out_dir: Path | None
    state: TrainerState
    log: _MetricsLog
    session_start: float = field(default_factory=time.perf_counter)
    last_saved: int | None = None
    best_in_memory: dict[str, torch.Tensor] | None = None

    def wall(self) -> float:
        """Wall seconds of the run: earlier sessions plus this one."""
        return self.state.elapsed + (time.perf_counter() - self.session_start)

    def budget_left(self) -> bool:
        """Whether one more step fits in ``max_forward_passes`` (``evals_per_step`` passes, 3 for FO)."""
        cap = self.run.cfg.max_forward_passes
        if cap is None:
            return True
        opt = self.run.optimizer
        per_step = FO_FORWARD_EQUIVALENTS if self.run.spec.kind != "zo" else int(getattr(opt, "evals_per_step", 1))
        return self.state.forward_passes + per_step <= cap


def _start_output(run: Run, out_dir: Path, resume: bool) -> TrainerState:
    """Prepare ``out_dir``: restore ``last.pt`` (``resume``) or clear a failed start's files; remove stale
    temporaries; write ``config.json``. Returns the trainer state to continue from."""
    cfg = run.cfg
    state = TrainerState()
    if resume:
        last = out_dir / "last.pt"
        ckpt = load_checkpoint(last, kind="resume")
        changed = _check_resume_config(ckpt["trainer"]["config"], cfg, last, int(ckpt["step"]))
        _load_trainable(run.named_params, ckpt["trainable"], str(last))
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.stream.load_state_dict(ckpt["data"])
        restore_rng_state(ckpt["rng"])
        state = TrainerState.from_dict(ckpt["trainer"]["state"])
        if changed:
            state.resumes.append({"step": state.step, "changed": changed})
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in _START_FILES:  # left by a start that failed before its first checkpoint
            (out_dir / name).unlink(missing_ok=True)
    removed = atomicio.remove_stale_temporaries(out_dir)
    if removed:
        print(
            f"removed {len(removed)} temporary file(s) left by an interrupted save in {str(out_dir)!r}",
            file=sys.stderr,
        )
    atomic_write_text(out_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    return state


def _save_resume(loop: _Loop) -> None:
    """Write ``last.pt`` (trainable tensors, optimizer, data order, RNG, counters); nothing without ``out``."""
    if loop.out_dir is None:
        return
    run, state = loop.run, loop.state
    st = state.to_dict()
    st["elapsed"] = loop.wall()
    atomic_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": "resume",
            "step": state.step,
            "trainable": _trainable_state(run.named_params),
            "optimizer": run.optimizer.state_dict(),
            "data": run.stream.state_dict(),
            "rng": capture_rng_state(),
            "trainer": {"state": st, "config": run.cfg.to_dict(), "method": run.spec.name},
        },
        loop.out_dir / "last.pt",
        keep_previous=True,
    )
    loop.last_saved = state.step


def _save_best(loop: _Loop) -> None:
    """Keep the current trainable tensors as the best-dev weights (``best.pt``, or in memory without ``out``)."""
    named = loop.run.named_params
    if loop.out_dir is None:
        loop.best_in_memory = {n: p.detach().clone() for n, p in named}
        return
    atomic_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": "weights",
            "step": loop.state.step,
            "trainable": _trainable_state(named),
        },
        loop.out_dir / "best.pt",
    )


def _eval_dev(loop: _Loop) -> None:
    """Dev accuracy now; a new best saves the weights; one ``eval`` record in the metrics."""
    run, state = loop.run, loop.state
    if not run.dev:
        return
    res = evaluate(run.objective, run.dev, run.collate, run.cfg.eval_batch_size, run.device)
    state.eval_forward_passes += res["forward_passes"]
    if state.step == 0:
        state.dev_accuracy_step0 = res["accuracy"]
    improved = state.best_dev_accuracy is None or res["accuracy"] > state.best_dev_accuracy
    if improved:
        state.best_dev_accuracy = res["accuracy"]
        state.best_step = state.step
        _save_best(loop)
    loop.log.write(
        {
            "type": "eval",
            "split": "dev",
            "step": state.step,
            "accuracy": res["accuracy"],
            "loss": res["loss"],
            "forward_passes": state.forward_passes,
            "eval_forward_passes": state.eval_forward_passes,
            "best": improved,
            "wall_time": loop.wall(),
        }
    )


def _checked_step(loop: _Loop, batch: Any) -> torch.Tensor:
    """:func:`_one_step`, with a lost rank or a non-finite loss or update turned into a one-line error that
    names the step, the advice and the last good checkpoint."""
    run, step = loop.run, loop.state.step + 1
    last_good = _last_good(loop.out_dir, loop.last_saved)
    try:
        return _one_step(run, batch, loop.state)
    except RankFailure as e:
        raise RankFailure(
            f"step {step} of {run.spec.name}: {e}. A rank that stops answering is given up on "
            f"after --dist-timeout {run.cfg.dist_timeout:g} s. {last_good}"
        ) from e.__cause__
    except NonFiniteLossError as e:
        what = "update" if "update" in str(e) else "loss"
        raise TrainingDiverged(
            f"step {step} of {run.spec.name}: the {what} became non-finite ({e}). Lower the learning rate (--lr) "
            f"or the radius (--opt eps=...), or pass --opt on_nonfinite=skip to skip such steps. {last_good}"
        ) from None


def _train_step(loop: _Loop) -> float:
    """One optimizer step on the next batch: counters, skip accounting and the ``train`` record; the loss."""
    run, state = loop.run, loop.state
    batch = next(run.stream).to(run.device)
    t0 = time.perf_counter()
    skipped_before = _skipped(run.optimizer)
    loss = _checked_step(loop, batch)
    state.train_time += time.perf_counter() - t0
    state.step += 1
    skipped_now = _skipped(run.optimizer) > skipped_before
    state.skipped += skipped_now
    state.consecutive_skipped = state.consecutive_skipped + 1 if skipped_now else 0
    loss_f = _float(loss)
    loop.log.write(
        {
            "type": "train",
            "step": state.step,
            "loss": loss_f if math.isfinite(loss_f) else None,
            "skipped": skipped_now,
            "forward_passes": state.forward_passes,
            "lr": _current_lr(run.optimizer),
            **_step_size_field(run.optimizer),
            "wall_time": loop.wall(),
        }
    )
    return loss_f


def _after_step(loop: _Loop, stop_at: int | None) -> bool:
    """Skip limits, then the dev evaluation and resume checkpoint that fall due; True to stop at ``stop_at``."""
    cfg, state = loop.run.cfg, loop.state
    _check_skips(cfg, state, loop.run.spec.name, loop.out_dir, loop.last_saved)
    last = state.step == cfg.steps or not loop.budget_left()
    at_eval = bool(cfg.eval_every and state.step % cfg.eval_every == 0) or last
    if at_eval:
        _eval_dev(loop)
    if at_eval or (cfg.save_every and state.step % cfg.save_every == 0) or state.step == stop_at:
        _save_resume(loop)
    return stop_at is not None and stop_at <= state.step < cfg.steps


def train_loop(
    run: Run,
    out: str | Path | None,
    *,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train ``run`` for ``run.cfg.steps`` steps; returns the final results (also written to
    ``out/results.json``). ``stop_at``: save the resume state after that step and return
    ``{"stopped_at": step}`` without the final evaluation (an interruption on purpose)."""
    from tqdm.auto import tqdm

    cfg = run.cfg
    out_dir = Path(out) if out is not None else None
    check_output_dir(str(out_dir) if out_dir is not None else None, resume)
    state = _start_output(run, out_dir, resume) if out_dir is not None else TrainerState()
    log = _MetricsLog(out_dir / "metrics.jsonl" if out_dir is not None else None)
    log.open(state.step if resume else None)
    loop = _Loop(run, out_dir, state, log, last_saved=state.step if resume else None)
    try:
        if state.step == 0 and not resume:
            if cfg.eval_at_start:
                _eval_dev(loop)
            _save_resume(loop)  # from here on the run is resumable, whatever fails
        bar = tqdm(
            total=cfg.steps, initial=state.step, disable=not cfg.progress, desc=run.spec.name, dynamic_ncols=True
        )
        try:
            while state.step < cfg.steps and loop.budget_left():
                loss = _train_step(loop)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", fp=state.forward_passes, skipped=state.skipped, refresh=False)
                if _after_step(loop, stop_at):
                    return {"stopped_at": state.step}
        finally:
            bar.close()
        return _finish(loop)
    finally:
        log.close()


def _one_step(run: Run, batch: Any, state: TrainerState) -> torch.Tensor:
    """One step through :mod:`llm.step` (closure, data-parallel loss, forward-pass accounting)."""
    if run.spec.kind == "zo":
        dp = run.data_parallel
        loss, count = zo_step(
            run.optimizer,
            [make_closure(run.objective, batch)],
            [len(batch)],
            data_parallel=dp is not None,
            log=dp.log if dp is not None else None,
        )
    else:
        loss, count = fo_step(run.optimizer, make_backward_closure(run.objective, batch))
    count.add_to(state)
    return loss


def _check_resume_config(saved: dict[str, Any], cfg: FinetuneConfig, where: Path, step: int) -> dict[str, list[Any]]:
    """Refuse a changed configuration, except the keys of :data:`_RESUMABLE_CHANGES`; returns the
    recorded changes ``{key: [old, new]}`` (announced on stderr). Fewer ``steps`` than done is refused."""
    now = cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(now) if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if diff:
        pairs = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume from {str(where)!r}: the configuration changed ({pairs})")
    if cfg.steps < step:
        raise ValueError(f"cannot resume with steps={cfg.steps} from {str(where)!r}: the run is already at step {step}")
    changed = {k: [saved.get(k), now[k]] for k in _RECORDED_CHANGES if k in saved and saved[k] != now[k]}
    if changed:
        told = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        print(f"resuming at step {step} with changed settings: {told} (recorded in results.json)", file=sys.stderr)
    return changed


def _skipped(opt: torch.optim.Optimizer) -> int:
    state: Any = opt.state  # zotheory optimizers keep their counters under the string key "zo"
    zo = state.get("zo") if isinstance(state, dict) else None
    return int(zo["skipped"]) if isinstance(zo, dict) and "skipped" in zo else 0


def _last_good(out_dir: Path | None, last_saved: int | None) -> str:
    if out_dir is None or last_saved is None:
        return "No checkpoint was written (no --out)."
    return f"Last good checkpoint: {out_dir / 'last.pt'} (step {last_saved}); --resume continues from it."


def _check_skips(
    cfg: FinetuneConfig, state: TrainerState, method: str, out_dir: Path | None, last_saved: int | None
) -> None:
    """Stop the run (:class:`TrainingDiverged`) past the skip limits of ``cfg``."""
    why = None
    if state.consecutive_skipped >= cfg.max_consecutive_skips:
        why = (
            f"{state.consecutive_skipped} consecutive steps skipped "
            f"(limit --max-consecutive-skips {cfg.max_consecutive_skips})"
        )
    elif state.skipped > cfg.skip_limit():
        why = f"{state.skipped} steps skipped in total (limit --max-skips {cfg.skip_limit()})"
    if why is not None:
        raise TrainingDiverged(
            f"step {state.step} of {method}: {why}: the loss or update keeps becoming non-finite. Lower the learning "
            f"rate (--lr) or the radius (--opt eps=...), or raise the limit. {_last_good(out_dir, last_saved)}"
        )


def _finish(loop: _Loop) -> dict[str, Any]:
    """Load the best-dev weights, evaluate the eval split, and write ``results.json``; the results."""
    run, state, out_dir, wall, log = loop.run, loop.state, loop.out_dir, loop.wall, loop.log
    cfg = run.cfg
    # the final weights are in last.pt; the model now takes the best-dev weights for the eval split
    if run.dev:
        if out_dir is not None:
            best = load_checkpoint(out_dir / "best.pt", kind="weights")
            _load_trainable(run.named_params, best["trainable"], str(out_dir / "best.pt"))
        elif loop.best_in_memory is not None:
            _load_trainable(run.named_params, loop.best_in_memory, "best weights")
    eval_res = evaluate(run.objective, run.eval, run.collate, cfg.eval_batch_size, run.device) if run.eval else None
    if eval_res is not None:
        state.eval_forward_passes += eval_res["forward_passes"]
        log.write(
            {
                "type": "eval",
                "split": "eval",
                "step": state.step,
                "checkpoint_step": state.best_step if run.dev else state.step,
                "accuracy": eval_res["accuracy"],
                "loss": eval_res["loss"],
                "forward_passes": state.forward_passes,
                "eval_forward_passes": state.eval_forward_passes,
                "wall_time": wall(),
            }
        )
    opt = run.optimizer
    results: dict[str, Any] = {
        "method": run.spec.name,
        "method_kind": run.spec.kind,
        "model": cfg.model,
        "mode": cfg.mode,
        "dtype": cfg.dtype,
        "device": str(run.device),
        "steps": state.step,
        "batch_size": cfg.batch_size,
        "evals_per_step": getattr(opt, "evals_per_step", None),
        "forward_passes": state.forward_passes,
        "forward_calls": state.forward_calls,
        "backward_calls": state.backward_calls,
        "forward_pass_convention": (
            "ZO: one closure call = one forward pass over the minibatch. FO: forward + backward per step, "
            f"a backward counted as 2 forward passes ({FO_FORWARD_EQUIVALENTS} per step). "
            "Evaluation passes are in eval_forward_passes."
        ),
        "eval_forward_passes": state.eval_forward_passes,
        "skipped_steps": state.skipped,
        "resumes": state.resumes,
        "dev_accuracy_step0": state.dev_accuracy_step0,
        "best_dev_accuracy": state.best_dev_accuracy,
        "best_step": state.best_step,
        "eval_accuracy": eval_res["accuracy"] if eval_res else None,
        "eval_loss": eval_res["loss"] if eval_res else None,
        "eval_checkpoint": "best_dev" if run.dev else "final",
        "wall_time_s": wall(),
        "train_time_s": state.train_time,
        "num_trainable_parameters": run.num_trainable,
        "optimizer_state_bytes": optimizer_state_bytes(opt),
        **peak_memory(run.device),
        "data": run.data_info,
        "options": {k: v for k, v in cfg.optimizer_options().items()},
        "policy": cfg.policy,
        "seed": cfg.seed,
    }
    if out_dir is not None:
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def train(
    cfg: FinetuneConfig, *, resume: bool = False, stop_at: int | None = None, distributed: bool = False
) -> dict[str, Any]:
    """Build and run ``cfg`` (everything validated before the output directory is touched).

    ``distributed``: data-parallel ZO under ``torchrun`` (:class:`DataParallel`, :mod:`llm.distributed`):
    rank 0 writes the output directory, with ``data_parallel`` (world size, all-reduce calls and bytes,
    whether the replicas ended bit-identical) added to ``results.json``; ``device="cuda"`` means
    ``cuda:LOCAL_RANK``. Resume and ``stop_at`` are not supported there yet.
    """
    check_output_dir(cfg.out, resume)
    if not distributed:
        run = build_run(cfg)
        return train_loop(run, cfg.out, resume=resume, stop_at=stop_at)
    if resume or stop_at is not None:
        raise ValueError("--distributed does not support --resume or --stop-at yet")
    rank, world = init_process_group_from_env(timeout=cfg.dist_timeout)
    finished = False
    try:
        if cfg.device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", rank))
            torch.cuda.set_device(local)
            cfg = cfg.replace(device=f"cuda:{local}")
        if rank != 0:
            cfg = cfg.replace(progress=False)
        dp = DataParallel(rank, world, CommunicationLog())
        run = build_run(cfg, data_parallel=dp)
        results = train_loop(run, cfg.out if rank == 0 else None)
        steps = max(1, int(results["steps"]))
        results["data_parallel"] = {
            "world_size": world,
            "allreduce_calls": dp.log.calls,
            "allreduce_bytes": dp.log.bytes,
            "allreduce_bytes_per_step": dp.log.bytes / steps,
            "replicas_identical": replicas_identical([p for _, p in run.named_params]),
        }
        if rank == 0 and cfg.out is not None:
            atomic_write_text(Path(cfg.out) / "results.json", json.dumps(results, indent=2) + "\n")
        finished = True
        return results
    finally:
        close_process_group(synchronise=finished)  # no barrier after a failure: a dead rank never reaches it
