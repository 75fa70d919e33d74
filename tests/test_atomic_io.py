"""Atomic writes (issue 15, defect 12): one helper module for every writer, umask respected."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from zotheory import atomicio


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_text_and_bytes_respect_the_umask(tmp_path: Path, umask_022) -> None:
    atomicio.write_text(tmp_path / "a.json", "{}\n")
    atomicio.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.json").read_text() == "{}\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    # a plain open() would give 0o666 & ~0o022 = 0o644; mkstemp alone gives 0o600
    assert _mode(tmp_path / "a.json") == 0o644 and _mode(tmp_path / "b.bin") == 0o644
    os.umask(0o077)
    atomicio.write_text(tmp_path / "c.txt", "x")
    assert _mode(tmp_path / "c.txt") == 0o600


def test_an_exception_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomicio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_atomic_path_keeps_the_suffix_for_writers_that_infer_the_format(tmp_path: Path) -> None:
    with atomicio.atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".plot.png.")
        tmp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_stale_temporaries_are_found_and_removed(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with atomicio.atomic_path(tmp_path / "last.pt") as tmp:
            tmp.write_bytes(b"x" * 100)
            raise KeyboardInterrupt
    # a hard kill leaves the temporary behind: simulate one
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"x" * 100)
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    removed = atomicio.remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [stale.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]


def test_every_report_writer_goes_through_the_helper() -> None:
    """The writers named in issue 15 (validation report, plots, tables.md, MiniLM and profile results)
    call :mod:`zotheory.atomicio`, not ``Path.write_text``/``savefig`` on the final path."""
    root = Path(__file__).resolve().parents[1]
    for rel in (
        "validation/report.py",
        "llm/opt_runs.py",  # the results.json / tables.md writer of llm.opt_validation
        "llm/minilm_sst2.py",
        "llm/profile.py",
        "llm/checkpoint.py",
    ):
        src = (root / rel).read_text()
        assert "atomicio" in src, rel
        assert ".write_text(" not in src.replace("atomicio.write_text(", ""), rel
