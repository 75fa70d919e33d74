"""The catalogue of bad inputs (``docs/errors.md``): each input, the error it gets, checked here.

``CASES`` is the catalogue: ``(id, through, input, exception, message pattern, call)``. ``through`` is
``api`` (a Python call) or ``cli`` (``python -m llm.finetune`` argv, run in-process through
:func:`llm.finetune.main`, which prints ``error: ...`` and returns the exit status). Every case runs
as one parametrized test, and :func:`test_the_document_lists_every_case_and_only_those` keeps
``docs/errors.md`` and this table in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_llm_train import _write_split

from llm import checkpoint as ckpt
from llm.config import FinetuneConfig, load_config_file, parse_key_values, parse_literal
from llm.finetune import main
from zotheory.estimators import NonFiniteLossError
from zotheory.optim import ZOSGD, ZOAdam, make_optimizer
from zotheory.optim.base import NonFiniteUpdateError

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "errors.md"


def _p(n: int = 3, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    return [torch.zeros(n, dtype=dtype)]


def _step_with(value: Any) -> Callable[[Path], Any]:
    return lambda tmp: ZOSGD(_p(), lr=0.1).step(lambda: value)


def _load_other_method(tmp: Path) -> None:
    a = make_optimizer("zo-sgd", _p(), lr=0.1, momentum=0.9)
    a.step(lambda: a.zo_params()[0].sum())
    ZOAdam(_p(), lr=0.1).load_state_dict(a.state_dict())


def _load_other_shape(tmp: Path) -> None:
    ZOSGD(_p(4), lr=0.1).load_state_dict(ZOSGD(_p(3), lr=0.1).state_dict())


def _fp16_tiny_radius(tmp: Path) -> None:
    q = torch.full((4,), 100.0, dtype=torch.float16)
    ZOSGD([q], lr=0.1, eps=1e-6).step(lambda: q.float().sum())


def _nan_loss(tmp: Path) -> None:
    ZOSGD(_p(), lr=0.1).step(lambda: torch.tensor(float("nan")))


def _overflowing_update(tmp: Path) -> None:
    q = torch.ones(8, dtype=torch.float16)
    ZOSGD([q], lr=100.0, eps=1e-2, exact_restore=True).step(lambda: (q.float() * 1000).sum())


def _corrupt_checkpoint(tmp: Path) -> None:
    path = tmp / "last.pt"
    x = torch.arange(1.0, 65.0)
    ckpt.atomic_save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "kind": "resume", "step": 1, "x": x}, path)
    raw = bytearray(path.read_bytes())
    raw[raw.find(x.numpy().tobytes()) + 9] ^= 1
    path.write_bytes(bytes(raw))
    ckpt.load_checkpoint(path)


def _junk_checkpoint(tmp: Path) -> None:
    (tmp / "junk.pt").write_bytes(b"not a checkpoint")
    ckpt.load_checkpoint(tmp / "junk.pt")


def _config_file(body: str, suffix: str = ".json") -> Callable[[Path], Any]:
    def call(tmp: Path) -> None:
        f = tmp / f"run{suffix}"
        f.write_text(body)
        load_config_file(f)

    return call


def _cfg(**kw: Any) -> Callable[[Path], Any]:
    return lambda tmp: FinetuneConfig(**kw)


# (id, through, input, exception, message pattern, call or argv)
CASES: list[tuple[str, str, str, type[BaseException], str, Any]] = [
    (
        "opt-lr-negative",
        "api",
        "ZOSGD(params, lr=-1)",
        ValueError,
        r"lr must be finite and >= 0, got -1",
        lambda t: ZOSGD(_p(), lr=-1),
    ),
    (
        "opt-lr-nan",
        "api",
        "ZOSGD(params, lr=nan)",
        ValueError,
        r"lr must be finite and >= 0, got nan",
        lambda t: ZOSGD(_p(), lr=float("nan")),
    ),
    (
        "opt-eps-zero",
        "api",
        "ZOSGD(params, eps=0)",
        ValueError,
        r"smoothing radius must be finite and > 0, got 0",
        lambda t: ZOSGD(_p(), lr=0.1, eps=0),
    ),
    (
        "opt-q-zero",
        "api",
        "ZOSGD(params, q=0)",
        ValueError,
        r"q must be an integer >= 1, got 0",
        lambda t: ZOSGD(_p(), lr=0.1, q=0),
    ),
    (
        "opt-scheme",
        "api",
        "ZOSGD(params, scheme='backward')",
        ValueError,
        r"unknown finite-difference scheme 'backward'",
        lambda t: ZOSGD(_p(), lr=0.1, scheme="backward"),
    ),
    (
        "opt-directions",
        "api",
        "ZOSGD(params, directions='foo')",
        ValueError,
        r"unknown direction family 'foo'",
        lambda t: ZOSGD(_p(), lr=0.1, directions="foo"),
    ),
    (
        "opt-on-nonfinite",
        "api",
        "ZOSGD(params, on_nonfinite='ignore')",
        ValueError,
        r"on_nonfinite must be 'raise' or 'skip', got 'ignore'",
        lambda t: ZOSGD(_p(), lr=0.1, on_nonfinite="ignore"),
    ),
    (
        "opt-unknown-name",
        "api",
        "make_optimizer('nope', params)",
        ValueError,
        r"unknown optimizer 'nope'; registered:",
        lambda t: make_optimizer("nope", _p()),
    ),
    (
        "opt-group-key",
        "api",
        "a parameter group with key 'lrr'",
        ValueError,
        r"unknown parameter-group key\(s\) \['lrr'\]",
        lambda t: ZOSGD([{"params": _p(), "lrr": 1}], lr=0.1),
    ),
    (
        "opt-duplicate-param",
        "api",
        "the same tensor twice",
        ValueError,
        r"'param_1' is given more than once \(also as 'param_0'\)",
        lambda t: ZOSGD(_p() * 2, lr=0.1),
    ),
    (
        "opt-int-param",
        "api",
        "an int64 parameter",
        ValueError,
        r"'param_0' has dtype int64.*real floating",
        lambda t: ZOSGD(_p(3, torch.int64), lr=0.1),
    ),
    (
        "opt-complex-param",
        "api",
        "a complex64 parameter",
        ValueError,
        r"'param_0' has dtype complex64",
        lambda t: ZOSGD(_p(3, torch.complex64), lr=0.1),
    ),
    (
        "opt-no-closure",
        "api",
        "opt.step() without a closure",
        ValueError,
        r"ZOSGD.step needs a closure",
        lambda t: ZOSGD(_p(), lr=0.1).step(),
    ),
    ("closure-none", "api", "a closure returning None", TypeError, r"the closure returned None", _step_with(None)),
    (
        "closure-str",
        "api",
        "a closure returning '0.5'",
        TypeError,
        r"the closure returned a str \('0.5'\)",
        _step_with("0.5"),
    ),
    (
        "closure-bool",
        "api",
        "a closure returning True",
        TypeError,
        r"the closure returned a bool \(True\)",
        _step_with(True),
    ),
    (
        "closure-bool-tensor",
        "api",
        "a closure returning tensor(True)",
        TypeError,
        r"dtype torch.bool",
        _step_with(torch.tensor(True)),
    ),
    (
        "closure-complex",
        "api",
        "a closure returning a complex tensor",
        TypeError,
        r"dtype torch.complex64",
        _step_with(torch.tensor(1 + 2j)),
    ),
    (
        "closure-vector",
        "api",
        "a closure returning a (3,) tensor",
        TypeError,
        r"tensor of shape \(3,\)",
        _step_with(torch.ones(3)),
    ),
    (
        "closure-nan",
        "api",
        "a closure returning NaN (on_nonfinite='raise')",
        NonFiniteLossError,
        r"closure evaluation 1 of 2 returned nan; parameters restored",
        _nan_loss,
    ),
    (
        "update-overflow",
        "api",
        "an fp16 update that overflows (exact_restore=True)",
        NonFiniteUpdateError,
        r"update of step 0 made [1-8] entr(?:y|ies) of 'param_0' non-finite; parameters and state restored",
        _overflowing_update,
    ),
    (
        "radius-resolution",
        "api",
        "eps=1e-6 on fp16 weights of size 100",
        ValueError,
        r"radius 1e-06 is below the floating-point resolution of param_0",
        _fp16_tiny_radius,
    ),
    (
        "state-other-method",
        "api",
        "a ZO-SGD (momentum) state_dict into ZO-Adam",
        ValueError,
        r"cannot load the state of a ZOSGD optimizer into a ZOAdam",
        _load_other_method,
    ),
    (
        "state-other-shape",
        "api",
        "a state_dict for a (3,) parameter into a (4,) one",
        ValueError,
        r"'param_0' has shape \(3,\), this optimizer's has \(4,\)",
        _load_other_shape,
    ),
    (
        "ckpt-corrupt",
        "api",
        "a checkpoint with a flipped bit",
        ckpt.CheckpointError,
        r"is corrupt: its content hash does not match",
        _corrupt_checkpoint,
    ),
    (
        "ckpt-junk",
        "api",
        "a file that is not a checkpoint",
        ckpt.CheckpointError,
        r"junk.pt' cannot be read",
        _junk_checkpoint,
    ),
    (
        "cfg-dtype",
        "api",
        "FinetuneConfig(dtype='fp8')",
        ValueError,
        r"dtype must be one of \['fp32', 'fp16', 'bf16'\], got 'fp8'",
        _cfg(dtype="fp8"),
    ),
    (
        "cfg-steps-str",
        "api",
        "FinetuneConfig(steps='10')",
        TypeError,
        r"steps must be int, got str '10'",
        _cfg(steps="10"),
    ),
    (
        "cfg-batch-zero",
        "api",
        "FinetuneConfig(batch_size=0)",
        ValueError,
        r"batch_size must be >= 1, got 0",
        _cfg(batch_size=0),
    ),
    (
        "cfg-eval-from",
        "api",
        "FinetuneConfig(eval_from='test')",
        ValueError,
        r"eval_from must be 'train' or 'dev', got 'test'",
        _cfg(eval_from="test"),
    ),
    (
        "cfg-lr-inf",
        "api",
        "FinetuneConfig(lr=inf)",
        ValueError,
        r"lr must be finite and >= 0, got inf",
        _cfg(lr=float("inf")),
    ),
    (
        "cfg-max-skips",
        "api",
        "FinetuneConfig(max_skips=-1)",
        ValueError,
        r"max_skips must be >= 0, got -1",
        _cfg(max_skips=-1),
    ),
    (
        "cfg-opt-key",
        "api",
        "FinetuneConfig(opt={'1x': 1})",
        ValueError,
        r"opt key '1x' is not a valid option name",
        _cfg(opt={"1x": 1}),
    ),
    (
        "cfg-policy-opt",
        "api",
        "policy_opt without a policy",
        ValueError,
        r"policy_opt \['k'\] given without a policy",
        _cfg(policy_opt={"k": 1}),
    ),
    (
        "cfg-lr-twice",
        "api",
        "lr=1e-3 and opt lr=1e-2",
        ValueError,
        r"lr given twice with different values",
        _cfg(lr=1e-3, opt={"lr": 1e-2}),
    ),
    (
        "cfgfile-missing",
        "api",
        "load_config_file('nope.json')",
        ValueError,
        r"config file '.*nope.json' does not exist",
        lambda t: load_config_file(t / "nope.json"),
    ),
    (
        "cfgfile-key",
        "api",
        "a config file with key 'methd'",
        ValueError,
        r"unknown key\(s\) \['methd'\]",
        _config_file('{"methd": "zo-sgd"}'),
    ),
    (
        "cfgfile-json",
        "api",
        "a config file with invalid JSON",
        ValueError,
        r"invalid JSON at line 1",
        _config_file("{not json"),
    ),
    (
        "cfgfile-suffix",
        "api",
        "a config file run.yaml",
        ValueError,
        r"unknown format '.yaml'; use .json or .toml",
        _config_file("a: 1", ".yaml"),
    ),
    (
        "kv-no-equals",
        "api",
        "parse_key_values(['lr'])",
        ValueError,
        r"--opt 'lr': expected key=value",
        lambda t: parse_key_values(["lr"]),
    ),
    (
        "kv-twice",
        "api",
        "--opt lr=1 --opt lr=2",
        ValueError,
        r"--opt 'lr' given twice",
        lambda t: parse_key_values(["lr=1", "lr=2"]),
    ),
    (
        "literal-inf",
        "api",
        "parse_literal('inf')",
        ValueError,
        r"non-finite number 'inf'",
        lambda t: parse_literal("inf"),
    ),
    ("cli-method", "cli", "--method nope", ValueError, r"unknown method 'nope'; available:", ["--method", "nope"]),
    (
        "cli-opt-type",
        "cli",
        "--opt lr=fast",
        ValueError,
        r"option lr='fast' of method 'zo-sgd' must be a number",
        ["--opt", "lr=fast"],
    ),
    (
        "cli-opt-unknown",
        "cli",
        "--opt momentm=0.9",
        ValueError,
        r"unknown option 'momentm' for method 'zo-sgd'",
        ["--opt", "momentm=0.9"],
    ),
    (
        "cli-opt-seed",
        "cli",
        "--opt seed=3",
        ValueError,
        r"option 'seed' of method 'zo-sgd' is set by the training loop",
        ["--opt", "seed=3"],
    ),
    ("cli-policy", "cli", "--policy nope", ValueError, r"unknown direction policy 'nope'", ["--policy", "nope"]),
    (
        "cli-dist-timeout",
        "cli",
        "--dist-timeout 0",
        ValueError,
        r"dist_timeout must be a positive finite number of seconds, got 0\.0",
        ["--dist-timeout", "0"],
    ),
    (
        "cli-policy-fo",
        "cli",
        "--method fo-adam --policy gv",
        ValueError,
        r"needs a zeroth-order method",
        ["--method", "fo-adam", "--policy", "gv"],
    ),
    ("cli-device", "cli", "--device foo", ValueError, r"unknown device 'foo'", ["--device", "foo"]),
    (
        "cli-device-cuda",
        "cli",
        "--device cuda:7 (on a machine without that GPU)",
        ValueError,
        r"device 'cuda:7' requested but",
        ["--device", "cuda:7"],
    ),
    ("cli-out-file", "cli", "--out an existing file", ValueError, r"is a file, not a directory", "OUT_IS_FILE"),
    (
        "cli-resume-empty",
        "cli",
        "--resume with no last.pt",
        ValueError,
        r"cannot resume: .*last.pt' does not exist",
        ["--resume"],
    ),
    ("cli-stop-at", "cli", "--stop-at 0", ValueError, r"--stop-at must be >= 1, got 0", ["--stop-at", "0"]),
    ("cli-preset", "cli", "--model preset:huge", ValueError, r"unknown OPT preset 'huge'", ["--model", "preset:huge"]),
    ("cli-data-dir", "cli", "--data-dir a missing folder", ValueError, r"does not exist", "MISSING_DATA_DIR"),
    (
        "cli-no-data-dir",
        "cli",
        "no --data-dir, task not cached",
        ValueError,
        r"offline: it is not in the local datasets cache.*--data-dir DIR.*--allow-download",
        "NO_DATA_DIR",
    ),
    (
        "cli-num-train-zero",
        "cli",
        "--num-train 0",
        ValueError,
        r"num_train=0: nothing to train on",
        ["--num-train", "0"],
    ),
    (
        "cli-batch-too-big",
        "cli",
        "--batch-size 64 with 16 training examples",
        ValueError,
        r"batch_size 64 is larger than the 16 training examples",
        ["--batch-size", "64"],
    ),
    (
        "cli-radius-fp16",
        "cli",
        "--dtype fp16 --opt eps=1e-30",
        ValueError,
        r"smoothing radius 1e-30 is below the floating-point resolution",
        ["--dtype", "fp16", "--opt", "eps=1e-30"],
    ),
    ("cli-dtype", "cli", "--dtype fp8", SystemExit, r"invalid choice: 'fp8'", ["--dtype", "fp8"]),
    (
        "cli-diverged",
        "cli",
        "--lr 1e6 (the loss becomes NaN)",
        RuntimeError,
        r"step \d+ of zo-sgd: the loss became non-finite .*--opt on_nonfinite=skip.*"
        r"Last good checkpoint: .*last.pt \(step 0\)",
        ["--lr", "1e6"],
    ),
    (
        "cli-skips",
        "cli",
        "--lr 1e6 --opt on_nonfinite=skip --max-skips 100 --steps 20",
        RuntimeError,
        r"5 consecutive steps skipped \(limit --max-consecutive-skips 5\)",
        ["--lr", "1e6", "--opt", "on_nonfinite=skip", "--max-skips", "100", "--steps", "20"],
    ),
    (
        "cli-skips-total",
        "cli",
        "--lr 1e6 --opt on_nonfinite=skip --steps 20 (default limit: 10% of steps)",
        RuntimeError,
        r"3 steps skipped in total \(limit --max-skips 2\)",
        ["--lr", "1e6", "--opt", "on_nonfinite=skip", "--steps", "20"],
    ),
]

IDS = [c[0] for c in CASES]
EXIT = {ValueError: 2, TypeError: 2, SystemExit: 2, RuntimeError: 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cat_sst2")
    _write_split(d / "train.tsv", 40, 0)
    _write_split(d / "dev.tsv", 10, 1)
    return d


def _argv(spec: Any, data_dir: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    out = tmp / "out"
    base = ["--model", "preset:tiny", "--num-train", "16", "--num-dev", "4", "--num-eval", "4", "--max-length", "16",
            "--batch-size", "4", "--eval-batch-size", "4", "--steps", "3", "--eval-every", "0", "--no-progress",
            "--threads", "1"]  # fmt: skip
    data = ["--data-dir", str(data_dir)]
    if spec == "OUT_IS_FILE":
        out.write_text("x")
        return [*base, *data, "--out", str(out)]
    if spec == "MISSING_DATA_DIR":
        return [*base, "--data-dir", str(tmp / "nope"), "--out", str(out)]
    if spec == "NO_DATA_DIR":
        monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp / "empty_cache"))
        return [*base, "--out", str(out)]
    return [*base, *data, "--out", str(out), *spec]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_bad_input_gets_its_error(
    case, tmp_path: Path, data_dir: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, through, _, exc, pattern, call = case
    if through == "api":
        with pytest.raises(exc, match=pattern):
            call(tmp_path)
        return
    if cid == "cli-device-cuda" and torch.cuda.device_count() > 7:
        pytest.fail("this machine has a cuda:7; the case needs a machine without one")
    argv = _argv(call, data_dir, tmp_path, monkeypatch)
    if exc is SystemExit:
        with pytest.raises(SystemExit) as e:
            main(argv)
        code = e.value.code
    else:
        code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT[exc], err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert re.search(pattern, lines[-1]), lines
    assert "Traceback" not in err
    if EXIT[exc] == 2 and cid not in ("cli-out-file", "cli-resume-empty"):
        assert not (tmp_path / "out").exists(), (
            f"{cid}: bad input wrote {sorted(p.name for p in (tmp_path / 'out').iterdir())}"
        )


def test_the_document_lists_every_case_and_only_those() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(), flags=re.M)
    assert rows == IDS, (
        f"docs/errors.md is out of step with CASES: missing {sorted(set(IDS) - set(rows))}, "
        f"extra {sorted(set(rows) - set(IDS))}"
    )
    assert len(IDS) >= 40 and len(set(IDS)) == len(IDS)
    assert {c[1] for c in CASES} == {"api", "cli"}
