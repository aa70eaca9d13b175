"""Calibration framework: step registry, IOV strategies, payload schemas, and the `dpnb gt` command."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.calibration import iov as iovs
from dpnb.calibration.payloads import PAYLOAD_NAMES, validate_payload
from dpnb.calibration.steps import (
    STEPS, Gate, StepStatus, check_pipeline, check_registry, get_step, runs_to_calibrate, step_for_notebook,
    step_producing, topological_order, upstream_payloads, upstream_steps,
)
from dpnb.cli import main
from dpnb.conditions import ConditionsDB
from dpnb.errors import ConditionsError, InputError, PipelineError
from dpnb.runs import IOV, RunId


def runs(first: int, last: int, exp: int = 1) -> list[RunId]:
    return [RunId(exp, r) for r in range(first, last + 1)]


# --- registry ----------------------------------------------------------------------

def test_registry_declares_the_five_steps():
    check_registry()
    assert topological_order() == ["channel_masking", "time_offsets", "alignment", "post_tracking", "beam_energy"]
    assert {s.name: s.notebook for s in STEPS.values()} == {
        "channel_masking": "calibration_masking", "time_offsets": "calibration_t0",
        "alignment": "calibration_alignment", "post_tracking": "calibration_post_tracking",
        "beam_energy": "calibration_beam_energy"}
    assert [STEPS[n].category for n in topological_order()] == ["raw", "raw", "alignment", "post-tracking", "analysis"]
    assert sorted(p for s in STEPS.values() for p in s.payloads) == sorted(PAYLOAD_NAMES)
    assert step_for_notebook("calibration_t0").name == "time_offsets"
    assert step_producing("DedxGain").name == "post_tracking"
    assert upstream_payloads("post_tracking") == ["ModuleAlignment"]
    assert upstream_payloads("alignment", transitive=True) == ["ChannelMask", "ChannelT0"]
    assert upstream_steps("beam_energy") == ["channel_masking", "time_offsets", "alignment", "post_tracking"]
    assert STEPS["alignment"].max_iterations > 1
    with pytest.raises(PipelineError, match="calibration_t00"):
        step_for_notebook("calibration_t00")
    with pytest.raises(PipelineError, match="'alignmnet'.*alignment"):
        get_step("alignmnet")


def test_cycle_detected_and_named():
    reg = dict(STEPS)
    reg["channel_masking"] = dataclasses.replace(reg["channel_masking"], depends_on=("alignment",))
    with pytest.raises(PipelineError) as err:
        topological_order(reg)
    assert "alignment -> time_offsets -> channel_masking -> alignment" in str(err.value)


def test_registry_problems_all_listed():
    reg = dict(STEPS)
    reg["beam_energy"] = dataclasses.replace(reg["beam_energy"], depends_on=("post_trackin",),
                                             payloads=("BeamEnergy", "DedxGain"), category="physics")
    with pytest.raises(PipelineError) as err:
        check_registry(reg)
    msg = str(err.value)
    assert "unknown step 'post_trackin'" in msg and "post_tracking" in msg
    assert "'DedxGain' written by both 'post_tracking' and 'beam_energy'" in msg
    assert "category 'physics'" in msg


def test_topological_order_respects_dependencies_in_any_registry_order():
    shuffled = {n: STEPS[n] for n in ["beam_energy", "alignment", "channel_masking", "post_tracking", "time_offsets"]}
    order = topological_order(shuffled)
    assert order == ["channel_masking", "time_offsets", "alignment", "post_tracking", "beam_energy"]
    # two independent roots keep registry order
    extra = dict(shuffled)
    extra["late_root"] = dataclasses.replace(STEPS["channel_masking"], name="late_root", payloads=())
    order = topological_order(extra)
    assert order.index("late_root") > order.index("channel_masking")
    for n, s in extra.items():
        assert all(order.index(d) < order.index(n) for d in s.depends_on)


def test_gates_and_status():
    g = STEPS["channel_masking"].gate("masked_fraction")
    assert (g.threshold, g.op) == (0.05, "<")
    assert g.verdict(0.01) == "pass" and g.verdict(0.2) == "fail" and g.verdict(float("nan")) == "fail"
    assert Gate("pull_width", (0.9, 1.1), "in").verdict(1.3) == "fail"
    with pytest.raises(PipelineError, match="masked_fraction"):
        STEPS["channel_masking"].gate("masked_frac")
    from dpnb.notebook import Results

    res = Results("calibration_masking", "demo")
    assert g.record(res, 0.07) == "fail" and g.record(res, 0.07, threshold=0.1) == "pass"
    assert res.gates["masked_fraction"]["threshold"] == 0.1 and res.gates["masked_fraction"]["op"] == "<"
    assert StepStatus("NOT_ENOUGH_DATA") is StepStatus.NOT_ENOUGH_DATA and str(StepStatus.OK) == "OK"
    assert {s.value for s in StepStatus} == {"OK", "ITERATE", "NOT_ENOUGH_DATA", "FAILURE"}


def test_missing_upstream_policy(tmp_path):
    with ConditionsDB(tmp_path / "c.sqlite") as db:
        db.create_tag("gt")
        align = {k: np.zeros(4) for k in ("dx_um", "dy_um", "dx_err_um", "dy_err_um")} | {"iterations": 2}
        db.add_payload("gt", "ModuleAlignment", align, IOV(1, 1, 1, 3), {})
        use, skipped = runs_to_calibrate(db, "post_tracking", runs(1, 5), ["gt"])  # policy: skip
        assert use == runs(1, 3)
        assert skipped == {RunId(1, 4): "no upstream payload ModuleAlignment",
                           RunId(1, 5): "no upstream payload ModuleAlignment"}
        with pytest.raises(ConditionsError, match=r"'time_offsets'.*ChannelMask: 5 run\(s\) 1:1"):
            runs_to_calibrate(db, "time_offsets", runs(1, 5), ["gt"])  # policy: stop
        assert runs_to_calibrate(db, "channel_masking", runs(1, 5), "gt") == (runs(1, 5), {})


def test_notebook_dag_must_follow_the_registry():
    dag = {s.notebook: {"depends_on": [STEPS[d].notebook for d in s.depends_on]} for s in STEPS.values()}
    check_pipeline(dag)
    dag["calibration_beam_energy"] = {"depends_on": ["calibration_masking"]}
    dag["calibration_t0"] = {"depends_on": []}
    with pytest.raises(PipelineError) as err:
        check_pipeline(dag)
    msg = str(err.value)
    assert "'calibration_beam_energy' (step 'beam_energy') must depend on 'calibration_post_tracking'" in msg
    assert "'calibration_t0' (step 'time_offsets') must depend on 'calibration_masking'" in msg
    # an indirect path is enough; notebooks not in the DAG are not checked
    check_pipeline({"calibration_alignment": {"depends_on": ["x"]}, "x": {"depends_on": ["calibration_t0"]}})


def test_real_pipeline_file_follows_the_registry():
    from dpnb.params import load_yaml, project_root

    dag = (load_yaml(project_root() / "parameters" / "pipeline.yaml") or {}).get("notebooks") or {}
    if not any(s.notebook in dag for s in STEPS.values()):
        pytest.skip("no calibration notebook in parameters/pipeline.yaml yet")
    check_pipeline(dag)


# --- IOV strategies ----------------------------------------------------------------

def test_single_iov():
    assert iovs.single_iov([RunId(1, 7), RunId(1, 3), RunId(2, 1)]) == IOV(1, 3, 2, 1)
    with pytest.raises(InputError, match="no runs"):
        iovs.single_iov([])


def test_run_by_run_merges_runs_without_enough_data():
    rs = runs(1, 6)
    enough = {r: True for r in rs}
    assert iovs.run_by_run(rs, enough) == [(IOV.single(r), [r]) for r in rs]
    enough[RunId(1, 3)] = False  # middle: into the previous run
    enough[RunId(1, 6)] = False  # last: into the previous run
    assert iovs.run_by_run(rs, enough) == [
        (IOV(1, 1, 1, 1), runs(1, 1)), (IOV(1, 2, 1, 3), runs(2, 3)), (IOV(1, 4, 1, 4), runs(4, 4)),
        (IOV(1, 5, 1, 6), runs(5, 6))]
    enough[RunId(1, 1)] = enough[RunId(1, 2)] = False  # start: into the next run with enough data
    assert iovs.run_by_run(rs, enough) == [
        (IOV(1, 1, 1, 4), runs(1, 4)), (IOV(1, 5, 1, 6), runs(5, 6))]


def test_run_by_run_without_any_data_pools_everything():
    rs = [RunId(1, 8), RunId(2, 1), RunId(1, 9)]
    assert iovs.run_by_run(rs, {r: False for r in rs}) == [(IOV(1, 8, 2, 1), sorted(rs))]
    with pytest.raises(InputError, match="1:9"):
        iovs.run_by_run(rs, {RunId(1, 8): True, RunId(2, 1): True})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 40), st.booleans()), min_size=1, max_size=30,
                unique_by=lambda t: t[:2]))
def test_run_by_run_groups_partition_runs(items):
    rs = [RunId(e, r) for e, r, _ in items]
    enough = {RunId(e, r): ok for e, r, ok in items}
    groups = iovs.run_by_run(rs, enough)
    flat = [r for _, g in groups for r in g]
    assert flat == sorted(rs)  # every run once, in order
    n_enough = sum(enough.values())
    assert len(groups) == max(n_enough, 1)
    for i, (iov, g) in enumerate(groups):
        assert all(iov.contains(r) for r in g)
        assert sum(enough[r] for r in g) == (1 if n_enough else 0)
        if i:
            assert not iov.overlaps(groups[i - 1][0])


def test_split_at_change_points():
    rs = [r for r in runs(1, 10) if r.run != 6]
    assert iovs.split_at(rs, [RunId(1, 4), RunId(1, 6)]) == [
        (IOV(1, 1, 1, 3), runs(1, 3)), (IOV(1, 4, 1, 5), runs(4, 5)), (IOV(1, 7, 1, 10), runs(7, 10))]
    assert iovs.split_at(rs, []) == [(IOV(1, 1, 1, 10), rs)]
    assert iovs.split_at(rs, [RunId(1, 1)]) == [(IOV(1, 1, 1, 10), rs)]


# --- payload schemas ---------------------------------------------------------------

def test_schema_normalises_dtypes_and_checks_dims():
    out = validate_payload("ChannelMask", {"status": [0, 1, 2, 0], "occupancy": [1, 2, 3, 4]})
    assert out["status"].dtype == np.int8 and out["occupancy"].dtype == np.float64
    with pytest.raises(InputError, match="n_channels.*parameter dims has 5"):
        validate_payload("ChannelMask", {"status": [0, 1, 2, 0], "occupancy": [1.0] * 4}, dims={"n_channels": 5})
    with pytest.raises(InputError, match="ChannelMask.*status.*values \\[-1\\]"):
        validate_payload("ChannelMask", {"status": [0, -1], "occupancy": [0.0, 0.0]})
    with pytest.raises(InputError, match="ModuleAlignment.*iterations.*int64"):
        validate_payload("ModuleAlignment", {k: [0.0] for k in ("dx_um", "dy_um", "dx_err_um", "dy_err_um")}
                         | {"iterations": 2.5})
    with pytest.raises(InputError, match="status.*2-d|status.*1-d"):
        validate_payload("ChannelMask", {"status": [[0, 1]], "occupancy": [0.0, 0.0]})
    with pytest.raises(InputError, match="must be a mapping"):
        validate_payload("DedxGain", [1.0, 0.1])


# --- CLI ---------------------------------------------------------------------------

@pytest.fixture
def gt_db(tmp_path):
    path = tmp_path / "conditions.sqlite"
    with ConditionsDB(path) as db:
        db.create_tag("demo_calibration", "demo bucket")
        db.create_tag("demo_prev")
        db.add_payload("demo_calibration", "DedxGain", {"gain": 1.0, "gain_err": 0.01}, IOV(1, 1, 1, 5),
                       {"step": "post_tracking", "bucket": "demo"})
        db.add_payload("demo_prev", "DedxGain", {"gain": 0.9, "gain_err": 0.01}, IOV(1, 1, 1, 5), {})
    return path


def gt(path, *args):
    return main(["gt", "--db", str(path), *args])


def test_cli_list_show_diff(gt_db, capsys):
    assert gt(gt_db, "list") == 0
    out = capsys.readouterr().out
    assert "demo_calibration" in out and "demo_prev" in out and "OPEN" in out
    assert main(["gt", "show", "demo_calibration", "--db", str(gt_db)]) == 0  # --db after the subcommand
    out = capsys.readouterr().out
    assert "DedxGain" in out and "(1,1,1,5)" in out and "post_tracking / demo" in out and "-> OPEN" in out
    assert gt(gt_db, "diff", "demo_prev", "demo_calibration") == 0
    out = capsys.readouterr().out
    assert "1 changed" in out and "~ DedxGain (1,1,1,5)" in out and "gain: max |diff| 0.1" in out
    assert gt(gt_db, "show", "demo_calibraton") == 2
    assert "nearest" in capsys.readouterr().err


def test_cli_state_and_publish(gt_db, capsys, monkeypatch):
    assert gt(gt_db, "state", "demo_calibration", "TESTING", "--runs", "1:1-6") == 2
    assert "1:6" in capsys.readouterr().err
    assert gt(gt_db, "state", "demo_calibration", "TESTING", "--runs", "1:1-5") == 0
    assert gt(gt_db, "state", "demo_calibration", "OPEN") == 2
    assert "illegal transition TESTING -> OPEN" in capsys.readouterr().err
    assert gt(gt_db, "state", "demo_calibration", "VALIDATED", "--by", "alice") == 0
    assert gt(gt_db, "state", "demo_calibration", "PUBLISHED") == 2  # only through publish
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    # without --bucket the approvals cannot be checked: refused, naming the override
    assert gt(gt_db, "publish", "demo_calibration", "--yes") == 2
    assert "--override-approval" in capsys.readouterr().err
    # with the override but not a terminal and no --yes: refused too
    assert gt(gt_db, "publish", "demo_calibration", "--override-approval", "--by", "bob") == 2
    assert "--yes" in capsys.readouterr().err
    with ConditionsDB(gt_db) as db:
        assert db.state("demo_calibration") == "VALIDATED"
    assert gt(gt_db, "publish", "demo_calibration", "--yes", "--override-approval", "--by", "bob") == 0
    with ConditionsDB(gt_db) as db:
        assert db.state("demo_calibration") == "PUBLISHED"
        assert db.history("demo_calibration")[-1]["who"] == "bob"


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("typed, rc, state", [("demo_prev\n", 0, "PUBLISHED"), ("demo_pre\n", 2, "VALIDATED")])
def test_cli_publish_asks_to_retype(gt_db, monkeypatch, typed, rc, state):
    with ConditionsDB(gt_db) as db:
        db.set_state("demo_prev", "TESTING", runs=runs(1, 5))
        db.set_state("demo_prev", "VALIDATED")
    monkeypatch.setattr("sys.stdin", FakeTerminal(typed))
    assert gt(gt_db, "publish", "demo_prev", "--override-approval", "--by", "carol") == rc
    with ConditionsDB(gt_db) as db:
        assert db.state("demo_prev") == state


def test_cli_bucket_option(gt_db, tmp_path, capsys):
    bucket = tmp_path / "b.yaml"
    data = tmp_path / "data"
    raw = data / "raw" / "e0001"
    raw.mkdir(parents=True)
    lines = ["exp,run,run_type,fill,start_time,stop_time,magnet_on,dq_flag,n_events"]
    for r in range(1, 8):
        (raw / f"r{r:05d}.root").write_bytes(b"")
        lines.append(f"1,{r},4S,1,0,1,1,{'bad' if r == 7 else 'good'},10")
    (data / "runs.csv").write_text("\n".join(lines) + "\n")
    bucket.write_text(f"label: b\nruns: ['1:1-7']\ndata: {{root: {data}}}\nconditions: {{db: {gt_db}}}\n")
    assert main(["gt", "--bucket", str(bucket), "show", "demo_calibration"]) == 0
    assert "DedxGain" in capsys.readouterr().out
    # the bucket's runs (1-6 good, 7 has a bad DQ flag): the tag covers only 1-5
    assert main(["gt", "--bucket", str(bucket), "state", "demo_calibration", "TESTING"]) == 2
    assert "1:6" in capsys.readouterr().err
    with ConditionsDB(gt_db) as db:
        db.add_payload("demo_calibration", "DedxGain", {"gain": 1.0, "gain_err": 0.01}, IOV(1, 6, 1, 6), {})
    assert main(["gt", "state", "demo_calibration", "TESTING", "--bucket", str(bucket)]) == 0


def test_cli_needs_a_database(tmp_path, capsys):
    assert main(["gt", "list"]) == 2
    assert "--db" in capsys.readouterr().err
    assert main(["gt", "--db", str(tmp_path / "none.sqlite"), "list"]) == 2
    assert not (tmp_path / "none.sqlite").exists()
