"""End-to-end tests of the fine-tuning loop (llm.train, llm.finetune, llm.config, llm.checkpoint).

Everything runs offline in seconds: a tiny random OPT (``preset:tiny``, 33.6k parameters)
with the offline tokenizer, on a synthetic sentiment task written to tmp files. No test
reads files outside the repository. Runs are deterministic (fixed seeds, private generators), so the
"loss falls" checks are exact statements about one seeded run, not statistical ones: they
fail if the optimizer stops descending (a sign flip, a broken restore, a wrong update).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm import checkpoint as ckpt
from llm.config import FinetuneConfig, coerce_options, load_config_file, parse_key_values, parse_literal
from llm.finetune import build_parser, config_from_args
from llm.train import (
    FO_FORWARD_EQUIVALENTS,
    TrainerState,
    available_methods,
    build_run,
    evaluate,
    read_metrics,
    resolve_method,
    train,
)
from zotheory.optim.adanaged import step_size_summary

REPO = Path(__file__).resolve().parents[1]

POS = ["great fun", "a charming film", "loved it", "beautiful and moving", "very good story", "a great cast"]
NEG = ["dull and long", "the worst movie", "boring from start", "flat acting", "makes no sense", "a bad film"]


def _write_split(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for _ in range(n):
        y = rng.randint(0, 1)
        s = rng.choice(POS if y else NEG) + " " + rng.choice(["the", "a", "it", "we"])
        lines.append(f"{s} \t{y}")  # GLUE style: a space before the tab
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("syn_sst2")
    _write_split(d / "train.tsv", 200, 0)
    _write_split(d / "dev.tsv", 60, 1)
    return d


def _cfg(data_dir: Path, **kw) -> FinetuneConfig:
    base = dict(
        model="preset:tiny",
        task="sst2",
        data_dir=str(data_dir),
        num_train=64,
        num_dev=16,
        num_eval=24,
        max_length=32,
        batch_size=16,
        eval_batch_size=16,
        steps=4,
        eval_every=2,
        threads=1,
        progress=False,
    )
    base.update(kw)
    return FinetuneConfig(**base)


def _train_loss(run) -> float:
    return evaluate(run.objective, run.stream.data, run.collate, 64, run.device)["loss"]


def _steps(run, n: int) -> TrainerState:
    from llm.train import _one_step

    st = TrainerState()
    for _ in range(n):
        _one_step(run, next(run.stream).to(run.device), st)
        st.step += 1
    return st


# --------------------------------------------------------------------------------------
# the loss falls
# --------------------------------------------------------------------------------------

#: Settings that descend on the synthetic task within the step budget (full-batch training
#: loss of the 64 training examples, measured before and after), with the run's batch size. AdaNAGED runs
#: full-batch (64) from the initial-step guess 1e-3: on this tiny random-weight model with batches of 16 the
#: probes' loss differences are mostly batch noise, and whether 50 steps find the step size there depends on the
#: seed for every search rule (docs/adanaged.md §7); full-batch probes are exact, so the case checks the loop's
#: probes and accounting, not that regime. Its probes' evaluations are counted on top of evals_per_step.
ZO_CASES = {
    "zo-sgd": ({"lr": 1e-3, "eps": 1e-3}, 50, 16),
    "jaguar-signsgd-block": ({"lr": 1e-3, "beta": 0.5, "eps": 1e-3}, 50, 16),
    "adanaged": ({"reps_rel": 1e-3}, 50, 64),
}


@pytest.mark.parametrize("method", [m for m in ZO_CASES if m == "zo-sgd" or m in available_methods()])
def test_zo_training_loss_falls(data_dir: Path, method: str) -> None:
    assert "zo-sgd" in available_methods()
    opts, steps, batch = ZO_CASES[method]
    run = build_run(_cfg(data_dir, method=method, opt=opts, batch_size=batch))
    before = _train_loss(run)
    st = _steps(run, steps)
    after = _train_loss(run)
    assert after < before - 0.005, (method, before, after)
    # exact forward-pass accounting: every closure call is one forward pass
    probes = run.optimizer.probe_evaluations() if hasattr(run.optimizer, "probe_evaluations") else 0  # AdaNAGED's
    assert st.forward_calls == st.forward_passes == steps * run.optimizer.evals_per_step + probes
    assert st.backward_calls == 0


@pytest.mark.parametrize("method,lr,drop", [("fo-sgd", 1e-2, 0.01), ("fo-adam", 1e-2, 0.2)])
def test_first_order_baselines_descend_and_count_backward_as_two(
    data_dir: Path, method: str, lr: float, drop: float
) -> None:
    run = build_run(_cfg(data_dir, method=method, lr=lr))
    before = _train_loss(run)
    st = _steps(run, 10)
    assert _train_loss(run) < before - drop
    assert st.forward_calls == st.backward_calls == 10
    assert st.forward_passes == FO_FORWARD_EQUIVALENTS * 10 == 30


def test_lora_trains_only_adapters_and_ft_trains_everything(data_dir: Path) -> None:
    run = build_run(_cfg(data_dir, mode="lora", opt={"lr": 1e-2, "eps": 1e-2}))
    names = [n for n, _ in run.named_params]
    assert names and all("lora_" in n for n in names)
    frozen = {n: p.detach().clone() for n, p in run.model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in run.named_params}
    _steps(run, 3)
    for n, p in run.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert any(not torch.equal(p, lora[n]) for n, p in run.named_params)
    ft = build_run(_cfg(data_dir, mode="ft"))
    total = sum(p.numel() for p in ft.model.parameters())
    assert ft.num_trainable == total > 10 * run.num_trainable


# --------------------------------------------------------------------------------------
# resume, checkpoints, results
# --------------------------------------------------------------------------------------


def _strip_wall(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


@pytest.mark.parametrize(
    "method,opts",
    [("zo-sgd", {"lr": 1e-3, "momentum": 0.9}), ("fo-adam", {"lr": 1e-2})],
)
def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(
    tmp_path: Path, data_dir: Path, method: str, opts: dict
) -> None:
    full = _cfg(data_dir, method=method, opt=opts, steps=6, eval_every=2, out=str(tmp_path / "full"))
    res_full = train(full)
    cut = full.replace(out=str(tmp_path / "cut"))
    assert train(cut, stop_at=3) == {"stopped_at": 3}
    assert not (tmp_path / "cut" / "results.json").exists()
    assert ckpt.load_checkpoint(tmp_path / "cut" / "last.pt", kind="resume")["step"] == 3
    res_cut = train(cut, resume=True)
    for name in ("last.pt", "best.pt"):
        a = ckpt.load_checkpoint(tmp_path / "full" / name)
        b = ckpt.load_checkpoint(tmp_path / "cut" / name)
        assert a["step"] == b["step"]
        assert a["trainable"].keys() == b["trainable"].keys()
        for k in a["trainable"]:
            assert torch.equal(a["trainable"][k], b["trainable"][k]), (name, k)
    a = ckpt.load_checkpoint(tmp_path / "full" / "last.pt")["optimizer"]
    b = ckpt.load_checkpoint(tmp_path / "cut" / "last.pt")["optimizer"]
    assert json.dumps(a, default=lambda t: t.tolist()) == json.dumps(b, default=lambda t: t.tolist())
    m_full = _strip_wall(read_metrics(tmp_path / "full" / "metrics.jsonl"))
    m_cut = _strip_wall(read_metrics(tmp_path / "cut" / "metrics.jsonl"))
    assert m_full == m_cut
    assert [r["step"] for r in m_full if r["type"] == "train"] == [1, 2, 3, 4, 5, 6]
    for key in ("eval_accuracy", "best_dev_accuracy", "best_step", "forward_passes", "eval_forward_passes", "steps"):
        assert res_full[key] == res_cut[key], key


def test_results_json_and_metrics_have_the_promised_fields(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(data_dir, opt={"lr": 1e-3}, steps=4, eval_every=2, out=str(tmp_path / "r"))
    res = train(cfg)
    on_disk = json.loads((tmp_path / "r" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in (
        "eval_accuracy",
        "steps",
        "forward_passes",
        "eval_forward_passes",
        "wall_time_s",
        "peak_memory_bytes",
        "dev_accuracy_step0",
    ):
        assert key in res
    assert res["steps"] == 4 and res["forward_passes"] == 8
    # dev (16 examples, batch 16): one forward per evaluation, at steps 0, 2, 4; eval split 24 -> 2
    assert res["eval_forward_passes"] == 3 * 1 + 2
    recs = read_metrics(tmp_path / "r" / "metrics.jsonl")
    train_recs = [r for r in recs if r["type"] == "train"]
    assert {"step", "loss", "forward_passes", "lr", "wall_time"} <= train_recs[0].keys()
    assert [r["forward_passes"] for r in train_recs] == [2, 4, 6, 8]
    evals = [r for r in recs if r["type"] == "eval"]
    assert [(r["split"], r["step"]) for r in evals] == [("dev", 0), ("dev", 2), ("dev", 4), ("eval", 4)]
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == cfg.to_dict()
    # the eval number is the best-dev checkpoint's accuracy on the eval split
    run = build_run(cfg)
    best = ckpt.load_checkpoint(tmp_path / "r" / "best.pt", kind="weights")
    with torch.no_grad():
        for n, p in run.named_params:
            p.copy_(best["trainable"][n])
    assert evaluate(run.objective, run.eval, run.collate, 16, run.device)["accuracy"] == res["eval_accuracy"]


def test_interrupted_checkpoint_write_leaves_the_previous_one_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    good = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "kind": "resume", "step": 1, "x": torch.arange(5.0)}
    ckpt.atomic_save(good, path)
    real_save = torch.save

    def torn_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="simulated"):
        ckpt.atomic_save({**good, "step": 2, "x": torch.zeros(5)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    back = ckpt.load_checkpoint(path, kind="resume")
    assert back["step"] == 1 and torch.equal(back["x"], torch.arange(5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_training_interrupted_while_saving_resumes_from_the_previous_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(data_dir, opt={"lr": 1e-3}, steps=6, eval_every=2, eval_at_start=False, out=str(tmp_path / "run"))
    real = ckpt.atomic_save
    calls = {"n": 0}

    def failing(obj, path, **kw):
        if obj.get("kind") == "resume" and obj["step"] == 4:
            calls["n"] += 1
            raise KeyboardInterrupt("killed while writing step 4")
        return real(obj, path, **kw)

    import llm.train as T

    monkeypatch.setattr(T, "atomic_save", failing)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(T, "atomic_save", real)
    assert calls["n"] == 1
    assert ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    res = train(cfg, resume=True)
    ref = train(cfg.replace(out=str(tmp_path / "ref")))
    assert res["eval_accuracy"] == ref["eval_accuracy"] and res["forward_passes"] == ref["forward_passes"] == 12
    a = ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["trainable"]
    b = ckpt.load_checkpoint(tmp_path / "ref" / "last.pt")["trainable"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "method,opts,budget,steps_done,passes",
    [
        ("zo-sgd", {"lr": 1e-3}, 7, 3, 6),  # 2 passes a step: the 4th step would reach 8 > 7
        ("fo-adam", {}, 10, 3, 9),  # 3 a step
    ],
)
def test_forward_pass_budget_stops_the_loop_before_it_is_exceeded(
    tmp_path: Path, data_dir: Path, method: str, opts: dict, budget: int, steps_done: int, passes: int
) -> None:
    lr = 1e-3 if method == "fo-adam" else None
    cfg = _cfg(
        data_dir,
        method=method,
        opt=opts,
        lr=lr,
        steps=50,
        eval_every=2,
        max_forward_passes=budget,
        out=str(tmp_path / "r"),
    )
    res = train(cfg)
    assert (res["steps"], res["forward_passes"]) == (steps_done, passes)
    evals = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["type"] == "eval"]
    # the step the budget ends on is evaluated on dev before the held-out number
    assert [(r["split"], r["step"]) for r in evals][-2:] == [("dev", steps_done), ("eval", steps_done)]


def test_forward_pass_budget_counts_adanaged_probes(tmp_path: Path, data_dir: Path) -> None:
    if "adanaged" not in available_methods():
        pytest.fail("adanaged is not registered")
    cfg = _cfg(data_dir, method="adanaged", opt={"reps_rel": 1e-3}, steps=50, eval_every=0, max_forward_passes=20)
    res = train(cfg)
    # probes (3 passes, inside a step) are counted when made: at most 3 passes over, and the loop
    # stopped on passes, not on the step count
    assert 20 - 2 < res["forward_passes"] <= 20 + 3
    assert res["steps"] < 10


def test_train_records_carry_adanaged_step_size_and_only_for_it(tmp_path: Path, data_dir: Path) -> None:
    ada = _cfg(data_dir, method="adanaged", opt={"reps_rel": 1e-3}, steps=8, eval_every=0, out=str(tmp_path / "a"))
    train(ada)
    recs = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["type"] == "train"]
    sizes = [r["step_size"] for r in recs]
    assert all(len(s) == 1 and math.isfinite(s[0]) and s[0] > 0 for s in sizes), sizes
    # the search rule changes gamma only at its probes, which come every 1, 2, 4 ... steps during the warm-up
    assert len({s[0] for s in sizes}) > 1, sizes
    # the record holds the gamma the step used: the resume state's last gamma is the last record's
    state = step_size_summary(ckpt.load_checkpoint(tmp_path / "a" / "last.pt", kind="resume")["optimizer"])
    assert state is not None and state["gamma"] == sizes[-1]
    # probing steps also carry the probe: the gamma it found and the factor it applied give the next record's gamma
    probed = [i for i, r in enumerate(recs) if "probe" in r]
    assert probed and len(probed) < len(recs)
    for i in probed:
        probe = recs[i]["probe"]
        assert sizes[i][0] == pytest.approx(probe["factor"] * probe["gamma"], rel=1e-12)
    sgd = _cfg(data_dir, opt={"lr": 1e-3}, steps=2, eval_every=0, out=str(tmp_path / "s"))
    train(sgd)
    assert not any("step_size" in r or "probe" in r for r in read_metrics(tmp_path / "s" / "metrics.jsonl"))


def test_checkpoints_hold_only_weights_only_types(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="primitive containers"):
        ckpt.atomic_save({"format": ckpt.FORMAT, "obj": object()}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")


# --------------------------------------------------------------------------------------
# bad input: clear errors, nothing written
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,match",
    [
        ("sentence\tlabel\ngood film\t1\nbad\tfilm\t0\n", r"train\.tsv:3: expected 2 tab-separated columns"),
        ("sentence\tlabel\ngood film\t7\n", r"train\.tsv:2: label 7 outside the label set"),
        ("sentence\tlabel\ngood film\tyes\n", r"train\.tsv:2: label 'yes' is not an integer"),
        ("text_a\tgold\ngood film\t1\n", r"missing column"),
    ],
)
def test_broken_data_files_are_rejected_before_anything_is_written(tmp_path: Path, body: str, match: str) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.tsv").write_text(body)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        train(_cfg(d, num_train=1, num_dev=0, num_eval=0, out=str(out)))
    assert not out.exists()


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(method="zo-sgdd"), r"unknown method 'zo-sgdd'"),
        (dict(opt={"momentun": 0.9}), r"unknown option 'momentun' for method 'zo-sgd'.*momentum"),
        (dict(opt={"lr": "fast"}), r"lr='fast'.*must be a number"),
        (dict(opt={"exact_restore": 1}), r"exact_restore=1.*true or false"),
        (dict(opt={"seed": 3}), r"'seed'.*set by the training loop"),
        (dict(method="fo-adam", policy="gv"), r"needs a zeroth-order method"),
        (dict(policy="nope"), r"unknown direction policy 'nope'"),
        (dict(model="preset:huge"), r"unknown OPT preset 'huge'"),
    ],
)
def test_bad_method_and_options_are_named_and_nothing_is_written(
    tmp_path: Path, data_dir: Path, kw: dict, match: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        train(_cfg(data_dir, out=str(out), **kw))
    assert not out.exists()


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(data_dir, opt={"lr": 1e-3}, steps=2, out=str(tmp_path / "r"))
    train(cfg)
    before = (tmp_path / "r" / "results.json").read_bytes()
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg)
    with pytest.raises(ValueError, match=r"configuration changed \(opt:"):
        train(cfg.replace(opt={"lr": 1e-2}), resume=True)
    assert (tmp_path / "r" / "results.json").read_bytes() == before


def test_config_validation_and_typed_options() -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        FinetuneConfig(dtype="fp8")
    with pytest.raises(TypeError, match="steps must be int"):
        FinetuneConfig(steps="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        FinetuneConfig(batch_size=0)
    assert parse_literal("1e-6") == 1e-6 and parse_literal("true") is True and parse_literal("gaussian") == "gaussian"
    assert parse_literal("[0.9, 0.99]") == [0.9, 0.99] and parse_literal("none") is None and parse_literal("3") == 3
    assert parse_key_values(["lr=1e-3", "q=4", "scheme=forward"]) == {"lr": 1e-3, "q": 4, "scheme": "forward"}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_key_values(["lr"])
    spec = resolve_method("ZO_SGD")
    from llm.train import method_options

    typed = coerce_options({"lr": 1, "momentum": "0.9", "exact_restore": "true"}, method_options(spec), what="x")
    assert typed == {"lr": 1.0, "momentum": 0.9, "exact_restore": True} and isinstance(typed["lr"], float)
    adam = coerce_options({"betas": [0.8, 0.9]}, method_options(resolve_method("fo-adam")), what="x")
    assert adam == {"betas": (0.8, 0.9)}


def test_config_files_and_command_line_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('method = "zo-sgd"\nsteps = 7\n[opt]\nlr = 1e-4\neps = 1e-2\n')
    ns = build_parser().parse_args(["--config", str(toml), "--opt", "lr=5e-5", "--steps", "9", "--mode", "lora"])
    cfg = config_from_args(ns)
    assert (cfg.steps, cfg.mode, cfg.opt) == (9, "lora", {"lr": 5e-5, "eps": 1e-2})
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"method": "fo-adam", "lr": 1e-5, "num_eval": None}))
    cfg = config_from_args(build_parser().parse_args(["--config", str(js)]))
    assert (cfg.method, cfg.lr, cfg.num_eval, cfg.steps) == ("fo-adam", 1e-5, None, FinetuneConfig().steps)
    js.write_text(json.dumps({"methd": "zo-sgd"}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['methd'\]"):
        load_config_file(js)
    js.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_config_file(js)


# --------------------------------------------------------------------------------------
# command line (subprocesses)
# --------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [sys.executable, "-m", "llm.finetune", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_help_and_errors() -> None:
    p = _cli("--help")
    assert p.returncode == 0 and "--opt KEY=VALUE" in p.stdout and "--policy" in p.stdout
    p = _cli("--method", "nope", "--data-dir", "x")
    assert p.returncode == 2 and "unknown method 'nope'" in p.stderr


def test_cli_two_step_run(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "cli"
    p = _cli(
        "--model", "preset:tiny", "--data-dir", str(data_dir), "--num-train", "32", "--num-dev", "16",
        "--num-eval", "16", "--method", "zo-sgd", "--opt", "lr=1e-3", "--opt", "eps=1e-3", "--steps", "2",
        "--batch-size", "8", "--max-length", "32", "--no-progress", "--threads", "1", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 2 and res["forward_passes"] == 4 and res["method"] == "zo-sgd"
    assert json.loads(p.stdout)["forward_passes"] == 4
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "results.json"} <= {f.name for f in out.iterdir()}
