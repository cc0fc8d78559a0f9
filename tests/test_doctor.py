"""nnlab doctor: a run's alarms, their advice trained over seeds and judged on bands, through the real
CLI on tiny data. The lecture's cases end to end: the fix the notes recommend comes out better, its band
clear of the config's; the advice an alarm says is the advice the doctor tests."""

from __future__ import annotations

import inspect
import re

import pytest

from conftest import nnlab, summary, train
from nnlab.cli.command_line import compose
from nnlab.commands import doctor
from nnlab.compare import band
from nnlab.config.validate import validate
from nnlab.training import alarms

FAST = ["data.source.n_train=400", "data.source.n_test=100", "trainer.progress=false", "diagnostics.every=10"]


def answer(folder):
    """The doctor's table (doctor.md) as {setting: row}, and its closing lines."""
    text = (folder / "doctor.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    head, *body = rows
    return {r[0]: dict(zip(head, r)) for r in body}, text


def seed_bands(folder, seeds=5):
    """acc/test over the seeds of each setting of the doctor's sweep, in the table's order (the sweep lists
    the config as it is first, then each candidate, seeds innermost); a run that diverged scores 0."""
    from nnlab.commands.report import collect

    groups: dict[int, list[float]] = {}
    for run in collect(folder / "sweep"):
        groups.setdefault(run.num // seeds, []).append(run.metric("acc/test") if run.status == "ok" else 0.0)
    return [band(groups[i]) for i in sorted(groups)]


def cured(tmp_path, args, fix, alarm):
    """Run the doctor; the fix comes out better, its acc/test band above the config's, its alarm gone."""
    folder = tmp_path / "doctor"
    out = nnlab("doctor", *args, f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert alarm in [a["name"] for a in summary(folder / "diagnosis")["alarms"]]
    rows, text = answer(folder)
    assert rows["as it is"]["verdict"] == "reference"  # the config is never called better than itself
    name = " ".join(fix)
    assert rows[name]["verdict"] == "better" and rows[name]["its alarm"].startswith(alarm), rows[name]
    assert rows[name]["its alarm"].endswith("gone"), rows[name]
    as_is, *candidates = seed_bands(folder)
    fixed = candidates[list(rows).index(name) - 1]
    assert fixed.n == as_is.n == 5 and fixed.low > as_is.high, (fixed, as_is)
    assert re.search(rf"best fix \(.*{alarm}.*\): nnlab train .*{re.escape(name)}$", text, re.M)
    return folder, rows, out


def test_zero_init_flat_loss_is_cured_by_he_normal_and_the_answer_is_a_sweep_like_any_other(tmp_path):
    folder = tmp_path / "doctor"
    out = nnlab(
        "doctor",
        *FAST,
        "init=zeros",
        "trainer.epochs=10",
        "alarms.flat_after_steps=100",
        f"hydra.sweep.dir={folder}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows, text = answer(folder)
    assert rows["as it is"]["verdict"] == "reference"
    assert rows["init=he_normal"]["verdict"] == "better" and rows["init=he_normal"]["its alarm"].startswith("flat_loss")
    assert "init=xavier_normal" in rows  # flat_loss's second fix where the weights started identical: an init
    assert "optimizer.lr=0.01" not in rows  # not the rate: the measured start explains the flat loss
    as_is, he = seed_bands(folder)[:2]
    assert as_is.n == he.n == 5 and he.low > as_is.high
    assert re.search(r"best fix \(flat_loss.*\): nnlab train .*init=(he|xavier)_normal$", text, re.M)
    assert "init=zeros" not in text.split("best fix")[1]  # the fix replaces the setting it changes
    # the table in the terminal, the folder, and a sweep like any other: report files, TensorBoard's mean runs
    assert (
        "the doctor's answer" in out.stdout
        and "better" in out.stdout
        and f"nnlab report {folder / 'sweep'}" in out.stdout
    )
    assert (folder / "sweep" / "report.csv").exists() and (folder / "sweep" / "decision_boundaries.png").exists()
    assert (folder / "sweep" / "mean").is_dir()
    assert not list(folder.rglob(".lock"))  # no folder of it keeps a lock file once done
    # the underfitting it also raised follows from the flat loss: its fixes are not tried
    assert "the fixes of underfitting: it follows from flat_loss" in out.stdout
    assert "model.hidden=[128,128]" not in rows
    # the same from the run folder: no run of its own, its alarms read
    again = tmp_path / "again"
    out = nnlab(
        "doctor",
        str(folder / "diagnosis"),
        "doctor.seeds=2",
        "doctor.candidates=1",
        f"hydra.sweep.dir={again}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert not (again / "diagnosis").exists() and len(list((again / "sweep").glob("*/summary.json"))) == 4
    rows, _ = answer(again)
    assert list(rows) == ["as it is", "init=he_normal"]


@pytest.mark.slow
def test_deep_sigmoid_vanishing_gradients_are_cured_by_relu_with_he(tmp_path):
    args = [
        *FAST,
        "model.hidden=[32,32,32,32,32,32]",
        "trainer.epochs=10",
        "optimizer=sgd",
        "activation=sigmoid",
        "init=xavier_normal",
    ]
    folder, rows, _ = cured(tmp_path, args, ("activation=relu", "init=he_normal"), "vanishing_gradients")
    assert rows["model.batch_norm=true"]["its alarm"] == "vanishing_gradients gone"


@pytest.mark.slow
def test_a_rate_of_100_diverges_and_a_lower_rate_cures_it(tmp_path):
    folder, rows, _ = cured(
        tmp_path, [*FAST, "optimizer=sgd", "optimizer.lr=100", "trainer.epochs=10"], ("optimizer.lr=1",), "divergence"
    )
    assert rows["as it is"]["loss/val"] == "- (5/5 failed)"  # every seed of the config diverges


@pytest.mark.slow
def test_a_rate_of_1e_5_has_a_tiny_update_ratio_and_a_higher_rate_cures_it(tmp_path):
    cured(
        tmp_path,
        [*FAST, "optimizer=sgd", "optimizer.lr=1e-5", "trainer.epochs=10"],
        ("optimizer.lr=0.01",),
        "update_ratio",
    )


@pytest.mark.slow
def test_unscaled_inputs_saturate_and_standardizing_cures_them(tmp_path):
    cured(
        tmp_path,
        ["experiment=preprocessing", "data.preprocess=none", "trainer.progress=false"],
        ("data.preprocess=standardize",),
        "saturation",
    )


def test_a_healthy_run_has_nothing_to_treat(tmp_path):
    run, _ = train(tmp_path, *FAST, "trainer.epochs=8", "optimizer.lr=0.01")  # Adam's 1e-3: a creeping curve in 8
    assert summary(run)["alarms"] == [] and summary(run)["loss_curve"] == "good"
    out = nnlab("doctor", str(run), f"hydra.sweep.dir={tmp_path / 'doc'}", cwd=tmp_path)
    assert out.returncode == 0 and "no alarm" in out.stdout and "nothing to treat" in out.stdout
    assert not (tmp_path / "doc" / "sweep").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["not/a/run"], "does not exist"),
        (["init=zeroz"], "init=zeros"),
        (["doctor.seeds=1"], "at least 2 seeds"),
        (["doctor.candidates=0"], "doctor.candidates"),
        (["-m", "init=zeros,he_normal"], "not -m"),
    ],
)
def test_bad_input_is_one_paragraph_before_any_run(tmp_path, args, says):
    out = nnlab("doctor", *args, f"hydra.sweep.dir={tmp_path / 'doc'}", cwd=tmp_path)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "doc" / "diagnosis").exists()


def test_help_says_both_forms(tmp_path):
    out = nnlab("doctor", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "nnlab doctor RUN_FOLDER" in out.stdout and "doctor.seeds" in out.stdout


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    out = nnlab("doctor", str(tmp_path / "empty"), cwd=tmp_path)
    assert out.returncode == 2 and "is not a finished run" in out.stderr and "Traceback" not in out.stderr


def test_candidates_come_one_from_each_alarm_in_turn_resolved_and_bounded():
    cfg = compose(["init=zeros", "optimizer.lr=0.002"], hydra=True)
    choices = dict(cfg.hydra.runtime.choices)
    raised = [
        alarms.dead_units({"stats/dead_frac/layer1": 1.0}, 0.9, 50).as_dict(),
        alarms.flat_loss(0.69, 0.69, 0.05, 200, start="symmetric").as_dict(),  # measured: identical units
        {"name": "old_alarm", "step": 1, "message": "a run from before the fixes were data"},
    ]
    got, notes = doctor.candidates_for(raised, cfg, choices, limit=3)
    # flat_loss is the more fundamental: its first fix, then dead_units' first, then flat_loss' second
    assert [c.overrides for c in got] == [("init=he_normal",), ("optimizer.lr=0.0002",), ("init=xavier_normal",)]
    assert any("beyond doctor.candidates=3" in n for n in notes)
    he = compose(["init=he_normal"], hydra=True)
    got, notes = doctor.candidates_for(raised[1:2], he, dict(he.hydra.runtime.choices), limit=4)
    assert [c.overrides for c in got] == [("init=xavier_normal",)] and "the config has it already" in notes[0]
    odd = {"name": "underfitting", "step": 9, "message": "", "fixes": [["model.width*2"], ["trainer.epochs*2"]]}
    got, notes = doctor.candidates_for([odd], he, dict(he.hydra.runtime.choices), limit=4)
    assert [c.overrides for c in got] == [("trainer.epochs=60",)] and "no number model.width" in notes[0]


def test_a_candidate_that_cannot_be_built_is_said_and_the_others_go_on():
    good, bad = doctor._buildable(
        ["init=zeros"],
        [doctor.Candidate(("optimizer.lr=-1",), ["x"]), doctor.Candidate(("init=he_normal",), ["flat_loss"])],
        {},
    )
    assert [c.overrides for c in good] == [("init=he_normal",)]
    assert bad[0].startswith("optimizer.lr=-1 (x): ") and "learning rate must be positive" in bad[0]


ALARMS = [
    alarms.initial_loss(3.0, 0.69, 0.5),
    alarms.divergence(float("nan"), 0.7, 3.0, 4),
    alarms.flat_loss(0.7, 0.7, 0.05, 200),
    alarms.gradient_flow(1e-4, 0.01, 100, 3),
    alarms.gradient_flow(1e4, 0.01, 100, 3),
    alarms.dead_units({"stats/dead_frac/l": 1.0}, 0.9, 1),
    alarms.saturation({"stats/saturated_frac/l": 1.0}, 0.9, 1),
    alarms.update_ratio({"stats/update_ratio/l": 1e-7}, 1e-5, 0.1, 1),
    alarms.update_ratio({"stats/update_ratio/l": 0.5}, 1e-5, 0.1, 1),
    alarms.fit_gap(0.5, 0.5, 0.1, 0.6, 1),
    alarms.fit_gap(1.0, 0.7, 0.1, 0.6, 1),
    alarms.loss_curve("too_low", 1),
    alarms.loss_curve("too_high", 1),
]


def test_every_alarm_says_exactly_the_fixes_it_carries_and_each_builds_on_the_default_config():
    assert {a.name for a in ALARMS} == {n for n in doctor.ORDER}  # every alarm of alarms.py, each in the doctor's order
    assert (
        len([f for f in dir(alarms) if inspect.isfunction(getattr(alarms, f)) and not f.startswith("_")]) == 14
    )  # the alarms, advice, scaled, curve_shape, and dataclasses' two
    cfg = compose([], hydra=True)
    for a in ALARMS:
        assert a.fixes and f"Try {alarms.advice(a.fixes)}" in a.message, a.name
        for fix in a.fixes:
            overrides = [doctor._resolve(o, cfg, dict(cfg.hydra.runtime.choices)) for o in fix]
            validate(compose(overrides))  # a knob that exists, with a value it takes


def test_a_best_fix_at_the_edge_of_what_was_tried_says_where_to_look_next():
    """The notes' "make sure the best value is not at the edge of the range": a rate x10 that wins, with
    x0.01 and the config's own tried too, is the largest tried; the next sweep goes on upwards."""
    best = doctor.Candidate(("optimizer.lr=0.01",), ["flat_loss"])
    rows = [best, doctor.Candidate(("optimizer.lr=1e-05",), ["update_ratio"])]
    (said,) = doctor.edge(best, rows, ["init=zeros"], {"optimizer.lr": 0.001})
    assert said.startswith("optimizer.lr: the best fix is the largest value tried (0.01)")
    assert said.endswith("nnlab train -m init=zeros optimizer.lr=0.01,0.0316,0.1,0.316 trainer.seed=0,1,2,3,4")
    middle = doctor.Candidate(("optimizer.lr=0.001",), ["x"])
    assert doctor.edge(middle, [middle, *rows], [], {"optimizer.lr": 0.0001}) == []  # inside what was tried
    assert doctor.edge(doctor.Candidate(("init=he_normal",), ["x"]), [], [], {"init": None}) == []  # not a number
