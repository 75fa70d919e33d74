"""The report of a validation run: ``report.md`` + ``plots/*.png`` + ``results.json`` + ``timing.json``.

``results.json`` holds every number a claim produced (statistics and plot data) and
nothing that depends on the clock, so two runs with the same seed on the same machine
write byte-identical files; wall times go to ``timing.json``. ``report.md`` is what a
researcher pastes into an appendix: a summary table (claim, source, predicted, measured,
verdict, expected verdict), the unexpected outcomes, the refuted claims, then one section per claim
with its plot(s), the rule that produced the verdict and the statistics behind it. Verdicts are
shown as measured; the counts of confirmed, refuted-as-expected and unexpected outcomes compare
them with each claim's recorded expectation (:func:`validation.core.classify`).

Imports point one way: ``__main__ -> report -> runner -> plots``; the PNGs are drawn by the runner as
each claim finishes (:mod:`validation.plots`), so this module only writes text and links them.
"""

from __future__ import annotations

import inspect
import json
import platform
import re
from pathlib import Path
from typing import Any

from validation.runner import SuiteResult, summarize_seconds
from zotheory import atomicio

#: How an unexpected outcome reads in the report and on the console.
_UNEXPECTED_TEXT = {
    "unexpectedly_refuted": "refuted, expected confirmed",
    "unexpectedly_confirmed": "confirmed, expected refuted",
    "crashed": "crashed (raised an exception or its process died)",
}


# ---------------------------------------------------------------------- markdown helpers
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0 or (1e-3 <= abs(v) < 1e5):
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def _value(v: Any, limit: int = 10) -> str:
    if isinstance(v, list):
        if len(v) > limit:
            return "[" + ", ".join(_value(x) for x in v[:limit]) + f", … ({len(v)} values, all in results.json)]"
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return _num(v)


def _flatten(stats: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in stats.items():
        key = f"{prefix}{k}"
        if (
            isinstance(v, dict)
            and v
            and len(v) <= 24
            and all(not isinstance(x, dict) or len(x) <= 24 for x in v.values())
        ):
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower().replace(" ", "-"))


# ---------------------------------------------------------------------- the report
def _environment() -> dict[str, str]:
    import numpy
    import scipy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def results_document(suite: SuiteResult, command: str) -> dict[str, Any]:
    """The content of ``results.json`` (no clock-dependent field)."""
    return {
        "suite": {
            "command": command,
            "size": suite.size,
            "seed": suite.seed,
            "claims": len(suite.outcomes),
            "passed": len(suite.outcomes) - len(suite.failed),
            "failed": suite.failed,
            "confirmed": len(suite.with_outcome("confirmed")),
            "refuted_as_expected": suite.with_outcome("refuted_as_expected"),
            "unexpected": suite.unexpected,
            "environment": _environment(),
        },
        "claims": {o.name: o.record for o in suite.outcomes},
    }


def timing_document(suite: SuiteResult) -> dict[str, Any]:
    """The content of ``timing.json``: wall and CPU seconds per claim and in total."""
    return {
        "size": suite.size,
        "seed": suite.seed,
        "workers": suite.workers,
        "total_seconds": round(suite.seconds, 3),
        "claims_seconds": {o.name: round(o.seconds, 3) for o in suite.outcomes},
        "claims_cpu_seconds": {o.name: round(o.cpu_seconds or 0.0, 3) for o in suite.outcomes},
        "wall_seconds_sum": round(sum(o.seconds for o in suite.outcomes), 3),
        "cpu_seconds_sum": round(sum(o.cpu_seconds or 0.0 for o in suite.outcomes), 3),
    }


def markdown(suite: SuiteResult, command: str) -> str:
    """The text of ``report.md``: summary table, unexpected and failed claims, then one section per claim."""
    env = _environment()
    n = len(suite.outcomes)
    failed = suite.failed
    unexpected = suite.unexpected
    lines = [
        "# zotheory validation report",
        "",
        f"Reproduce with `{command}` (size `{suite.size}`, master seed {suite.seed}). "
        f"**{n - len(failed)} of {n} claims passed**"
        + (f"; {len(failed)} failed: " + ", ".join(f"[`{f}`](#{_anchor(f)})" for f in failed) + "." if failed else "."),
        "",
        f"Against the recorded expectations: **{len(suite.with_outcome('confirmed'))} confirmed, "
        f"{len(suite.with_outcome('refuted_as_expected'))} refuted as expected, {len(unexpected)} unexpected**"
        + (": " + ", ".join(f"[`{u}`](#{_anchor(u)})" for u in unexpected) if unexpected else "")
        + ". The command exits non-zero only on an unexpected outcome or a crash.",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ". Every number below is in "
        "`results.json`; wall times are in `timing.json`. Each claim states its statistical test, "
        "its false-alarm probability and the interval that decided its verdict.",
        "",
        "## Summary",
        "",
        "| claim | source | predicted | measured | verdict | expected |",
        "|---|---|---|---|---|---|",
    ]
    for o in suite.outcomes:
        r = o.record
        verdict = "**pass**" if o.passed else "**FAIL**"
        lines.append(
            f"| [`{o.name}`](#{_anchor(o.name)}) | {_cell(r['source'])} | {_cell(r['predicted'])} | "
            f"{_cell(r['measured'])} | {verdict} | {_expected_cell(o.outcome, r['expected'])} |"
        )
    lines.append("")
    records = {o.name: o.record for o in suite.outcomes}
    if unexpected:
        lines += ["## Unexpected outcomes", ""]
        lines += [f"- [`{u}`](#{_anchor(u)}): {_UNEXPECTED_TEXT[records[u]['outcome']]}" for u in unexpected]
        lines.append("")
    if failed:
        lines += ["## Failed claims", ""]
        for f in failed:
            rec = records[f]
            why = "raised an exception" if rec.get("error") else _cell(rec.get("notes") or rec.get("measured"))
            if rec["outcome"] == "refuted_as_expected":
                why = f"refuted as expected ({_cell(rec['expected_reason'])}). {why}"
            lines.append(f"- [`{f}`](#{_anchor(f)}): {why}")
        lines.append("")
    lines += ["## Claims", ""]
    for o in suite.outcomes:
        lines += _claim_section(o.name, o.record, o.passed)
    return "\n".join(lines).rstrip() + "\n"


def _expected_cell(outcome: str, expected: str) -> str:
    if outcome == "crashed":
        return f"{expected}; **crashed**"
    return expected if outcome in ("confirmed", "refuted_as_expected") else f"{expected}; **unexpected**"


def _claim_section(name: str, r: dict[str, Any], passed: bool) -> list[str]:
    out = [f"### {name}", ""]
    out.append(
        f"**Verdict: {'pass' if passed else 'FAIL'}** · expected: {_expected_cell(r['outcome'], r['expected'])}"
        f" · source: {r['source']} · tags: " + ", ".join(f"`{t}`" for t in r.get("tags", []))
    )
    out.append("")
    if r.get("expected_reason"):
        out += [f"*Expected {r['expected']}:* {r['expected_reason']}", ""]
    if r.get("description"):
        out += [" ".join(inspect.cleandoc(r["description"]).split()), ""]
    out += [
        f"- **Predicted:** {r.get('predicted', '')}",
        f"- **Measured:** {r.get('measured', '')}",
        f"- **Verdict rule:** {r.get('verdict_rule', '')}",
        "",
    ]
    for f, plot in zip(r.get("plot_files", []), r.get("plots", []), strict=False):
        out += [f"![{_cell(plot.get('title', name))}]({f})", ""]
    if r.get("notes"):
        out += [f"*Notes.* {r['notes']}", ""]
    stats = r.get("statistics") or {}
    if stats:
        out += ["<details><summary>Statistics</summary>", "", "| statistic | value |", "|---|---|"]
        for k, v in _flatten(stats):
            out.append(f"| {_cell(k)} | {_cell(_value(v))} |")
        out += ["", "</details>", ""]
    if r.get("error"):
        out += ["Traceback:", "", "```", r["error"].rstrip(), "```", ""]
    if r.get("plot_error"):
        out += ["The plot could not be drawn:", "", "```", r["plot_error"].rstrip(), "```", ""]
    return out


def write_report(suite: SuiteResult, out_dir: Path, command: str) -> dict[str, Path]:
    """Write ``report.md``, ``results.json`` and ``timing.json`` into ``out_dir`` (plots are already there)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": out_dir / "report.md",
        "results": out_dir / "results.json",
        "timing": out_dir / "timing.json",
    }
    atomicio.write_text(paths["results"], json.dumps(results_document(suite, command), indent=1, sort_keys=True) + "\n")
    atomicio.write_text(paths["timing"], json.dumps(timing_document(suite), indent=1, sort_keys=True) + "\n")
    atomicio.write_text(paths["report"], markdown(suite, command))
    return paths


def console_summary(suite: SuiteResult) -> str:
    """Plain-text summary for stdout; the unexpected outcomes come last."""
    width = max([len(o.name) for o in suite.outcomes] + [5])
    tags = {"confirmed": "", "refuted_as_expected": "expected", "crashed": "CRASHED"}
    lines = []
    for o in suite.outcomes:
        mark = "pass" if o.passed else "FAIL"
        tag = tags.get(o.outcome, "UNEXPECTED")
        lines.append(f"{mark:4}  {tag:<10}  {o.name:<{width}}  {o.record.get('measured', '')}"[:200])
    n, nf = len(suite.outcomes), len(suite.failed)
    unexpected = suite.unexpected
    lines.append(
        f"{n - nf}/{n} claims passed in {summarize_seconds(suite.seconds)} (size {suite.size}, seed {suite.seed})"
    )
    lines.append(
        f"{len(suite.with_outcome('confirmed'))} confirmed, {len(suite.with_outcome('refuted_as_expected'))} "
        f"refuted as expected, {len(unexpected)} unexpected"
    )
    if unexpected:
        records = {o.name: o.record for o in suite.outcomes}
        lines.append(f"UNEXPECTED ({len(unexpected)}):")
        lines += [f"  {name}: {_UNEXPECTED_TEXT[records[name]['outcome']]}" for name in unexpected]
    return "\n".join(lines)
