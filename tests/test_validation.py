"""Tests of the validation suite itself: it can fail, it reports failures, it selects and it is deterministic.

These run a handful of cheap claims at the quick size (a few seconds each); the full suite is
``python -m validation``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from validation import load_claims
from validation.__main__ import main
from validation.core import REGISTRY, ClaimResult, Context, claim, classify
from validation.runner import run_suite, select_claims

CHEAP = ["newton_schulz_band", "product_norm_duality"]


@pytest.fixture(scope="module")
def registry():
    return load_claims()


@pytest.fixture
def temporary_claims(registry):
    """Register a failing claim and a raising claim for the duration of a test."""

    @claim("_test_refuted", source="test", tags=("_test",))
    def refuted(ctx: Context) -> ClaimResult:
        return ClaimResult(predicted="1", measured="2", passed=False, statistics={"value": 2.0}, verdict_rule="1 == 2")

    @claim("_test_raises", source="test", tags=("_test",))
    def raises(ctx: Context) -> ClaimResult:
        raise RuntimeError("deliberate failure inside a claim")

    yield ["_test_refuted", "_test_raises"]
    REGISTRY.pop("_test_refuted", None)
    REGISTRY.pop("_test_raises", None)


@pytest.fixture
def expected_refutations(registry):
    """Claims recorded as expected refutations: one refuted, one confirmed (unexpectedly), one raising."""
    reason = "a deliberately false statement"

    @claim("_test_expected_refuted", source="test", tags=("_test_expect",), expected="refuted", reason=reason)
    def refuted(ctx: Context) -> ClaimResult:
        return ClaimResult(
            predicted="1",
            measured="2",
            passed=False,
            statistics={"value": 2.0},
            verdict_rule="1 == 2",
            notes="the statement does not hold",
        )

    @claim("_test_expected_refuted_but_holds", source="test", tags=("_test_expect",), expected="refuted", reason=reason)
    def holds(ctx: Context) -> ClaimResult:
        return ClaimResult(predicted="1", measured="1", passed=True, statistics={"value": 1.0}, verdict_rule="1 == 1")

    @claim("_test_expected_refuted_raises", source="test", tags=("_test_expect",), expected="refuted", reason=reason)
    def raises(ctx: Context) -> ClaimResult:
        raise RuntimeError("a crash is never an expected refutation")

    names = ["_test_expected_refuted", "_test_expected_refuted_but_holds", "_test_expected_refuted_raises"]
    yield names
    for n in names:
        REGISTRY.pop(n, None)


def test_wrong_estimator_scale_makes_its_claim_fail(registry, monkeypatch):
    """A Gaussian family with a wrong unbiasing constant (1.3 instead of 1) fails its moment claim; the real one
    passes."""
    from zotheory.directions import Gaussian

    good = run_suite([registry["estimator_moments_gaussian"]], size="quick", seed=0, workers=1, progress=False)
    assert good.passed, good.outcomes[0].record["measured"]
    monkeypatch.setattr(Gaussian, "scale", lambda self, dim: 1.3)
    bad = run_suite([registry["estimator_moments_gaussian"]], size="quick", seed=0, workers=1, progress=False)
    record = bad.outcomes[0].record
    assert not bad.passed and record["verdict"] == "fail" and record["error"] is None
    for q in ("q=1", "q=4"):
        stats = record["statistics"][q]
        assert not stats["mean_along_gradient"]["passed"] and not stats["second_moment"]["passed"], q


def test_broken_estimator_makes_the_command_exit_nonzero(registry, monkeypatch, tmp_path, capsys):
    """`python -m validation` on a selection (quick size): a Gaussian estimator whose scale is wrong (1.3) and
    whose sign is flipped refutes a claim expected to be confirmed, so the command exits 1 and names it."""
    from zotheory.directions import Gaussian

    monkeypatch.setattr(Gaussian, "scale", lambda self, dim: -1.3)
    out = tmp_path / "broken"
    code = main(
        [
            "--claims",
            "estimator_moments_gaussian",
            "newton_schulz_band",
            "--size",
            "quick",
            "--workers",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == ["UNEXPECTED (1):", "  estimator_moments_gaussian: refuted, expected confirmed"]
    results = json.loads((out / "results.json").read_text())
    assert results["suite"]["unexpected"] == ["estimator_moments_gaussian"]
    assert results["claims"]["estimator_moments_gaussian"]["outcome"] == "unexpectedly_refuted"
    assert results["claims"]["newton_schulz_band"]["outcome"] == "confirmed"


def test_expected_refutation_exits_zero_and_keeps_its_verdict(registry, expected_refutations, tmp_path, capsys):
    refuted, holds, raises = expected_refutations
    out = tmp_path / "expected"
    assert main(["--claims", refuted, "newton_schulz_band", "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "1 confirmed, 1 refuted as expected, 0 unexpected" in stdout
    results = json.loads((out / "results.json").read_text())
    record = results["claims"][refuted]
    assert record["verdict"] == "fail" and record["outcome"] == "refuted_as_expected"  # shown as measured
    assert record["expected"] == "refuted" and record["expected_reason"] == "a deliberately false statement"
    assert results["suite"]["refuted_as_expected"] == [refuted] and results["suite"]["unexpected"] == []
    md = (out / "report.md").read_text()
    assert "1 confirmed, 1 refuted as expected, 0 unexpected" in md and "refuted as expected (a deliberately" in md
    # an expected refutation that holds, or that crashes, is unexpected
    for name, outcome in ((holds, "unexpectedly_confirmed"), (raises, "crashed")):
        assert main(["--claims", refuted, name, "--workers", "1", "--out", str(out), "--no-progress"]) == 1
        assert json.loads((out / "results.json").read_text())["claims"][name]["outcome"] == outcome


def test_classify_and_claim_expectations_are_checked(registry):
    assert classify(True, "confirmed") == "confirmed"
    assert classify(False, "confirmed") == "unexpectedly_refuted"
    assert classify(False, "refuted") == "refuted_as_expected"
    assert classify(True, "refuted") == "unexpectedly_confirmed"
    assert classify(False, "refuted", crashed=True) == "crashed"
    with pytest.raises(ValueError, match="'maybe'"):
        classify(True, "maybe")
    with pytest.raises(ValueError, match="'refutd'"):
        claim("_test_bad_expectation", source="test", tags=("_test",), expected="refutd", reason="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs its reason"):
        claim("_test_no_reason", source="test", tags=("_test",), expected="refuted")
    # the recorded expectations of the suite: only the LDSD paper's statement is expected to be refuted
    refuted = {c.name for c in registry.values() if c.expected == "refuted"}
    assert refuted == {"ldsd_alignment_over_iterations"}
    assert "d = 10^2 to 10^4" in registry["ldsd_alignment_over_iterations"].expected_reason
    assert all(registry[n].expected == "confirmed" for n in registry if n.startswith("adanaged_robust_"))


def test_exit_code_failures_last_and_traceback_in_report(registry, temporary_claims, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        ["--claims", *temporary_claims, "newton_schulz_band", "--workers", "1", "--out", str(out), "--no-progress"]
    )
    assert code == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3:] == [
        "UNEXPECTED (2):",
        "  _test_raises: crashed (raised an exception or its process died)",
        "  _test_refuted: refuted, expected confirmed",
    ]
    report = (out / "report.md").read_text()
    assert "deliberate failure inside a claim" in report and "Traceback" in report
    results = json.loads((out / "results.json").read_text())
    assert results["claims"]["newton_schulz_band"]["verdict"] == "pass"
    assert results["claims"]["_test_raises"]["verdict"] == "fail"
    assert "RuntimeError" in results["claims"]["_test_raises"]["error"]
    assert (out / "plots" / "newton_schulz_band_0.png").stat().st_size > 1000
    assert main(["--claims", "newton_schulz_band", "--workers", "1", "--out", str(out), "--no-progress"]) == 0


def test_selection_by_name_and_tag(registry, temporary_claims):
    assert [c.name for c in select_claims(registry, ["newton_schulz_band"])] == ["newton_schulz_band"]
    by_tag = {c.name for c in select_claims(registry, tags=["lmo"])}
    assert {"lmo_identities", "newton_schulz_band", "product_norm_duality"} <= by_tag
    assert all("lmo" in registry[n].tags for n in by_tag)
    both = {c.name for c in select_claims(registry, ["alignment_laws"], ["_test"])}
    assert both == {"alignment_laws", *temporary_claims}
    assert len(select_claims(registry)) == len(registry)
    with pytest.raises(ValueError, match="no_such_claim"):
        select_claims(registry, ["no_such_claim"])
    with pytest.raises(ValueError, match="no_such_tag"):
        select_claims(registry, tags=["no_such_tag"])
    assert main(["--claims", "no_such_claim"]) == 2


def test_same_seed_same_json_in_process_and_in_workers(tmp_path):
    """Byte-identical results.json for the same seed, whether claims run here or in spawned workers;
    wall times live only in timing.json."""
    runs = [(tmp_path / "a", "1"), (tmp_path / "b", "1"), (tmp_path / "c", "2")]
    for out, workers in runs:
        assert main(["--claims", *CHEAP, "--workers", workers, "--out", str(out), "--no-progress", "--seed", "3"]) == 0
    texts = [(out / "results.json").read_bytes() for out, _ in runs]
    assert texts[0] == texts[1] == texts[2]
    assert "seconds" not in texts[0].decode()
    timing = json.loads((tmp_path / "c" / "timing.json").read_text())
    assert set(timing["claims_seconds"]) == set(CHEAP) and timing["workers"] == 2
    other = tmp_path / "d"
    assert main(["--claims", *CHEAP, "--workers", "1", "--out", str(other), "--no-progress", "--seed", "4"]) == 0
    assert (other / "results.json").read_bytes() != texts[0]


def test_list_prints_every_claim(registry, capsys):
    assert main(["--list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert listed == set(registry)


def test_claim_results_have_a_verdict_rule_and_statistics(registry):
    """Every claim module registers claims with a source and tags (the report's columns)."""
    assert len(registry) >= 30
    for c in registry.values():
        assert c.source and c.tags and c.description, c.name


def test_report_markdown_lists_summary_and_sections(tmp_path):
    out = tmp_path / "r"
    assert main(["--claims", "newton_schulz_band", "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    md = (out / "report.md").read_text()
    assert "| claim | source | predicted | measured | verdict | expected |" in md
    assert "### newton_schulz_band" in md and "Verdict rule" in md and "plots/newton_schulz_band_0.png" in md
    assert Path(out / "timing.json").exists()


def test_a_worker_exits_when_its_runner_is_killed(tmp_path: Path) -> None:
    """A runner killed mid-suite must not leave pool workers computing claims for nobody."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    pid_file = tmp_path / "worker.pid"
    (tmp_path / "worker.py").write_text(
        textwrap.dedent(f"""
        import os, time
        from validation.runner import _exit_with_parent
        _exit_with_parent(os.getppid(), poll_seconds=0.1)
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    )
    (tmp_path / "runner.py").write_text(
        textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, {str(tmp_path / "worker.py")!r}])
        time.sleep(60)
    """)
    )
    parent = subprocess.Popen([sys.executable, str(tmp_path / "runner.py")])
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def running(pid: int) -> bool:  # a zombie (exited, not yet reaped) counts as gone
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 10
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(worker), f"worker {worker} still running 10 s after its parent was killed"
