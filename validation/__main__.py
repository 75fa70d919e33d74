"""``python -m validation``: check every implemented claim and write the report.

Examples::

    python -m validation                          # everything, quick size, 2 workers
    python -m validation --size full              # the appendix-quality run
    python -m validation --tags estimators lmo    # a selection by tag
    python -m validation --claims ns_band --workers 1
    python -m validation --list

Exit status: 0 when every selected claim's verdict equals its recorded expectation (confirmed,
or refuted as expected: a paper's statement that our experiments refute is a result), 1 when a
verdict differs from its expectation or a claim crashed (those claims are listed last on stdout),
2 on a usage error. The report shows every verdict as measured.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from validation import load_claims
from validation.report import console_summary, write_report
from validation.runner import run_suite, select_claims


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m validation`` (see the module docstring for examples)."""
    p = argparse.ArgumentParser(
        prog="python -m validation",
        description="Check zotheory's theoretical and empirical claims on synthetic problems with known constants "
        "and write a report (markdown + PNG + JSON).",
    )
    p.add_argument("--claims", nargs="+", metavar="NAME", default=[], help="run these claims (by name)")
    p.add_argument("--tags", nargs="+", metavar="TAG", default=[], help="run the claims carrying any of these tags")
    p.add_argument("--size", choices=("quick", "full"), default="quick", help="problem/sample sizes (quick: CI)")
    p.add_argument("--seed", type=int, default=0, help="master seed (same seed, same results.json)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (1: run in this process)")
    p.add_argument("--out", type=Path, default=Path("validation_report"), help="output folder")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the selected claims, write the report and return the exit status (0, 1 or 2, see above)."""
    args = build_parser().parse_args(argv)
    registry = load_claims()
    try:
        claims = select_claims(registry, args.claims, args.tags)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        width = max(len(c.name) for c in claims)
        for c in claims:
            expect = "" if c.expected == "confirmed" else f"  (expected {c.expected})"
            print(f"{c.name:<{width}}  [{', '.join(c.tags)}]  {c.source}{expect}")
        return 0
    if args.seed < 0:
        print(f"error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2

    out: Path = args.out
    plot_dir = out / "plots"
    if plot_dir.exists():
        shutil.rmtree(plot_dir)  # stale figures of an earlier selection would be misleading
    plot_dir.mkdir(parents=True, exist_ok=True)
    command = _command(args)
    print(
        f"running {len(claims)} claim(s) at size {args.size!r}, seed {args.seed}, {args.workers} worker(s) -> {out}/",
        flush=True,
    )
    suite = run_suite(
        claims, size=args.size, seed=args.seed, workers=args.workers, plot_dir=plot_dir, progress=not args.no_progress
    )
    paths = write_report(suite, out, command)
    print(f"report: {paths['report']}  (numbers: {paths['results']}, wall times: {paths['timing']})")
    print(console_summary(suite), flush=True)  # ends with the unexpected outcomes, if any
    return 0 if suite.as_expected else 1


def _command(args: argparse.Namespace) -> str:
    parts = ["python", "-m", "validation", "--size", args.size, "--seed", str(args.seed)]
    if args.claims:
        parts += ["--claims", *args.claims]
    if args.tags:
        parts += ["--tags", *args.tags]
    return " ".join(shlex.quote(p) for p in parts)


if __name__ == "__main__":
    sys.exit(main())
