"""Markdown tables of the OPT validation: accuracy in the format of JAGUAR Table 2, peak memory in the format of
JAGUAR Table 3 (the paper's numbers beside ours), and throughput.

Reference numbers: Petrov, Evseev, Veprikov, Beznosikov et al., "Leveraging Coordinate Momentum in SignSGD and
Muon: Memory-Optimized Zero-Order LLM Fine-Tuning" (JAGUAR; arXiv 2506.04430), Tables 2 and 3, as quoted in
``docs/theory.md`` §6.3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from llm.memory import CUDA_PEAK_KIND
from llm.opt_methods import METHODS, MODES

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


def format_gb(b: int | None) -> str:
    """Bytes as decimal GB (the unit of JAGUAR Table 3), 3 decimals; "—" for none."""
    return "—" if b is None else f"{b / 1e9:.3f}"


def format_gib(b: int | None) -> str:
    """Bytes as GiB, 3 decimals; "—" for none."""
    return "—" if b is None else f"{b / 2**30:.3f}"


def format_value(x: float | None, spec: str) -> str:
    """``format(x, spec)``; "—" for none."""
    return "—" if x is None else format(x, spec)


def index_records(records: Iterable[dict[str, Any]], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The records of one ``kind`` ("measure" or "train") by ``(key, mode)``."""
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

    meas = index_records(records, "measure")
    train = index_records(records, "train")
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
        paper_gb = JAGUAR_TABLE3.get(_paper_key(key) or "")
        cells = []
        for i, mode in enumerate(MODES):
            r = meas.get((key, mode))
            if r is None:
                ours = "—"
            elif r.get("error"):
                ours = "error"
            else:
                ours = format_gb(r.get("step_peak_bytes"))
            cells += [ours, f"{paper_gb[i]:.3f}" if paper_gb else "—"]
        lines.append(f"| {_label(key, records)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Ours: `torch.cuda.max_memory_allocated` over one warm-up step and the timed steps after "
        '`reset_peak_memory_stats` (state allocated lazily counts). JAGUAR: "standard PyTorch utilities", unit '
        "not stated (GB or GiB; the GiB value of ours is in the throughput table); their FO-SGD is mixed precision "
        "(fp32 master weights), ours is pure fp16."
        if _memory_kind(results) == CUDA_PEAK_KIND
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
                f"| {_label(key, records)} | {mode} | {r['num_trainable_parameters']:,} "
                f"| {r['forward_passes_per_step']} "
                f"| {format_value(r['forward_s'] and 1e3 * r['forward_s'], '.1f')} "
                f"| {format_value(r['step_s'] and 1e3 * r['step_s'], '.1f')} "
                f"| {format_value(r['step_over_forward'], '.2f')} | {format_value(r['steps_per_s'], '.2f')} "
                f"| {format_value(r['forward_passes_per_s'], '.1f')} "
                f"| {format_gb(r['inference_peak_bytes'])} | {format_gb(r.get('first_step_peak_bytes'))} "
                f"| {format_gb(r.get('steady_step_peak_bytes'))} | {format_gib(r['step_peak_bytes'])} "
                f"| {format_gb(r['optimizer_state_bytes'])} | {shape[0]}×{shape[1]} |"
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
            "| Method | mode | steps | steps/s | fwd passes/s | first loss | last-window loss "
            "| dev acc (step 0 → best) | peak GB |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in trained:
            curve = r.get("loss_curve") or []
            last = curve[-1]["mean_loss"] if curve else None
            d0, best = r.get("dev_accuracy_step0"), r.get("best_dev_accuracy")
            dev = "—" if d0 is None or best is None else f"{100 * d0:.1f} → {100 * best:.1f}"
            lines.append(
                f"| {r['label']} | {r['mode']} | {r['steps']} | {format_value(r.get('steps_per_s'), '.2f')} "
                f"| {format_value(r.get('forward_passes_per_s'), '.1f')} | {format_value(r.get('loss_first'), '.4f')} "
                f"| {format_value(last, '.4f')} "
                f"| {dev} | {format_gb(r.get('peak_memory_bytes'))} |"
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
