"""Learning-rate sweeps: the pick, the extension at an edge, and rows recorded at a rate no longer picked."""

import math

import pandas as pd
import pytest

from replication.grid import LR_LADDER, LR_SWEEP, SETTINGS, plan, resolve_lr, run_key, sweep_state
from replication.report import lr_table, superseded


def sweep(label, losses):
    return [{"stage": "lr", "label": label, "lr": lr, "seen_loss": str(x)} for lr, x in losses.items()]


def test_interior_best_is_picked():
    runs = sweep("MoS", {"3e-4": 1.6, "1e-3": 1.4, "3e-3": 1.5})
    assert sweep_state("MoS", runs) == ("1e-3", None)
    assert sweep_state("LoRA r=e", runs) == (None, None)  # another method's sweep has not started


def test_unfinished_initial_sweep_waits():
    assert sweep_state("MoS", sweep("MoS", {"3e-4": 1.6, "1e-3": 1.4})) == (None, None)


@pytest.mark.parametrize("losses, expected", [
    ({"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4}, (None, "1e-2")),                 # best at the top: go up
    ({"3e-4": 1.3, "1e-3": 1.5, "3e-3": 1.6}, (None, "1e-4")),                 # best at the bottom: go down
    ({"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": 1.45}, ("3e-3", None)),    # the extension was worse
    ({"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": 1.3}, (None, "3e-2")),     # still improving: go on
    ({"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": float("nan")}, ("3e-3", None)),  # a diverged run is worst
    ({"1e-4": 1.2, "3e-4": 1.3, "1e-3": 1.5, "3e-3": 1.6}, ("1e-4", None)),     # the ladder ends
])
def test_edge_extends_along_the_ladder(losses, expected):
    assert sweep_state("VeRA", sweep("VeRA", losses)) == expected


def test_plan_inserts_the_extension_before_the_rows_that_wait_for_it():
    s = SETTINGS["cpu"]
    runs = sweep("MoS", {"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4}) + sweep("LoRA r=e", {"3e-4": 1.6, "1e-3": 1.4,
                                                                                         "3e-3": 1.5})
    rows = plan(s, runs)
    added = [i for i, r in enumerate(rows) if r.stage == "lr" and r.label == "MoS" and r.lr == "1e-2"]
    assert len(added) == 1
    first_waiting = min(i for i, r in enumerate(rows) if r.lr == "best:MoS")
    assert added[0] < first_waiting
    template = next(r for r in rows if r.stage == "lr" and r.label == "MoS")
    assert rows[added[0]].__dict__ | {"lr": template.lr} == template.__dict__  # same run, only the rate differs
    assert len(rows) == len(plan(s, [])) + 1
    assert resolve_lr(next(r for r in rows if r.lr == "best:MoS"), runs) is None
    assert resolve_lr(next(r for r in rows if r.lr == "best:LoRA r=e"), runs) == "1e-3"
    assert set(LR_SWEEP) <= set(LR_LADDER) and all(not math.isnan(float(x)) for x in LR_LADDER)


def _csv_rows(s, mos_losses):
    """runs.csv-like frame: MoS's sweep and its main seed-0 row recorded at 3e-3 (the pick when it ran)."""
    mos = next(r for r in plan(s, []) if r.stage == "lr" and r.label == "MoS")
    rows = [{"stage": "lr", "label": "MoS", "lr": lr, "seen_loss": x, "run_key": run_key(mos, lr)}
            for lr, x in mos_losses.items()]
    rows.append({"stage": "main", "label": "MoS", "lr": "3e-3", "seen_loss": mos_losses["3e-3"],
                 "run_key": run_key(mos, "3e-3")})
    df = pd.DataFrame(rows)
    for col in ("unseen_loss", "arc_easy", "mmlu_cloze"):
        df[col] = 0.5
    return df


def test_rows_at_a_rate_no_longer_picked_are_left_out_of_the_tables():
    s = SETTINGS["cpu"]
    settled = _csv_rows(s, {"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": 1.45})
    assert not superseded(settled, s).any()  # 3e-3 is still the pick: the main row counts
    moved = _csv_rows(s, {"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": 1.3, "3e-2": 1.35})
    stale = superseded(moved, s)
    assert stale.tolist() == [False] * 5 + [True]  # only the main row at 3e-3; sweep rows always count
    pending = _csv_rows(s, {"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4})
    assert superseded(pending, s).tolist() == [False] * 3 + [True]  # not picked until the 1e-2 row is in
    table = lr_table(pending)
    assert "| MoS | 1e-2 | (best so far is at the edge" in table and "✓" not in table
    assert lr_table(moved).count("✓") == 1 and "| MoS | 1e-2 | 1.3000" in lr_table(moved)


def _sweep_frame(losses):
    df = pd.DataFrame(sweep("VeRA", losses))
    for col in ("unseen_loss", "arc_easy", "mmlu_cloze"):
        df[col] = 0.5
    return df


def test_a_pick_at_the_end_of_the_ladder_is_flagged_and_an_interior_one_is_not():
    top = _sweep_frame({"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": 1.3, "3e-2": 1.2, "1e-1": 1.1})
    assert sweep_state("VeRA", top.to_dict("records")) == ("1e-1", None)
    assert "| VeRA | 1e-1 | 1.1000 | 0.5000 | 0.5000 | 0.5000 | ✓ (end of the rate ladder" in lr_table(top)
    bottom = _sweep_frame({"1e-4": 1.2, "3e-4": 1.3, "1e-3": 1.5, "3e-3": 1.6})
    assert "| VeRA | 1e-4 | 1.2000 | 0.5000 | 0.5000 | 0.5000 | ✓ (end of the rate ladder" in lr_table(bottom)
    inside = _sweep_frame({"3e-4": 1.6, "1e-3": 1.4, "3e-3": 1.5})
    assert lr_table(inside).count("✓ |") == 1 and "end of the rate ladder" not in lr_table(inside)
