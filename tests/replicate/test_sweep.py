"""Learning-rate sweeps: the pick, the extension at an edge, and rows recorded at a rate no longer picked."""

import math
from dataclasses import replace

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
    falling = {"3e-4": 1.6, "1e-3": 1.5, "3e-3": 1.4, "1e-2": 1.3, "3e-2": 1.2, "1e-1": 1.1}
    assert sweep_state("VeRA", _sweep_frame(falling).to_dict("records")) == (None, "3e-1")  # 1e-1 is not the top
    rungs = LR_LADDER[LR_LADDER.index("3e-4"):]
    losses = {lr: 1.6 - 0.1 * i for i, lr in enumerate(rungs)}  # still falling at the ladder's top
    top = _sweep_frame(losses)
    assert sweep_state("VeRA", top.to_dict("records")) == (LR_LADDER[-1], None)
    row = f"| VeRA | {LR_LADDER[-1]} | {losses[LR_LADDER[-1]]:.4f} | 0.5000 | 0.5000 | 0.5000 | ✓ (end of the rate ladder"
    assert row in lr_table(top)
    bottom = _sweep_frame({"1e-4": 1.2, "3e-4": 1.3, "1e-3": 1.5, "3e-3": 1.6})
    assert "| VeRA | 1e-4 | 1.2000 | 0.5000 | 0.5000 | 0.5000 | ✓ (end of the rate ladder" in lr_table(bottom)
    inside = _sweep_frame({"3e-4": 1.6, "1e-3": 1.4, "3e-3": 1.5})
    assert lr_table(inside).count("✓ |") == 1 and "end of the rate ladder" not in lr_table(inside)


def _settled(s, losses_by_group):
    """runs.csv-like dicts: every sweep named in ``losses_by_group`` settled at 1e-3, and the given rows
    ``{(stage, label): {seed: held-in loss}}`` recorded at that rate under their run keys."""
    rows = plan(s, [])
    runs = []
    for label in {label for _, label in losses_by_group} | {"MoS"}:
        runs += sweep(label, {"3e-4": 9.0, "1e-3": 5.0, "3e-3": 9.0})
    for (stage, label), losses in losses_by_group.items():
        for seed, loss in losses.items():
            row = next(r for r in rows if (r.stage, r.label, r.seed % 2) == (stage, label, seed % 2))
            runs.append({"stage": stage, "label": label, "seed": seed, "lr": "1e-3", "seen_loss": str(loss),
                         "run_key": run_key(replace(row, seed=seed), "1e-3")})
    return runs


def test_a_pair_within_twice_its_spread_gets_a_third_seed_on_both_sides():
    s = replace(SETTINGS["cpu"], third_seed_within=2)
    main = {("main", "LoRA r=e"): {0: 1.50, 1: 1.40},
            ("main", "MoS"): {0: 1.51, 1: 1.39},        # Δ +0.01, -0.01: mean 0 within 2 x 0.014 -> third seed
            ("main", "LoRA r=8e"): {0: 1.00, 1: 0.90}}  # Δ -0.5, -0.5 vs r=e; vs MoS +0.51, +0.49: both clear
    rows = plan(s, _settled(s, main))
    third = [(i, r) for i, r in enumerate(rows) if r.seed == 2]
    assert {(r.stage, r.label, r.lr) for _, r in third} == {("main", "MoS", "best:MoS"),
                                                           ("main", "LoRA r=e", "best:LoRA r=e")}
    last_main = max(i for i, r in enumerate(rows) if r.stage == "main" and r.seed < 2)
    first_after = min(i for i, r in enumerate(rows) if i > last_main and r.stage != "main")
    assert all(last_main < i < first_after for i, _ in third)  # right after its stage's rows
    assert not [r for r in plan(SETTINGS["cpu"], _settled(s, main)) if r.seed == 2]  # off unless asked for

    clear = {**main, ("main", "MoS"): {0: 1.60, 1: 1.51}}  # Δ +0.10, +0.11: beyond 2 spreads
    assert not [r for r in plan(s, _settled(s, clear)) if r.seed == 2]
    one_seed = {k: {0: v[0]} for k, v in main.items()}  # seed 1 not in yet: nothing to decide on
    assert not [r for r in plan(s, _settled(s, one_seed)) if r.seed == 2]


def test_an_ablation_within_its_spread_of_mos_adds_seed_2_of_both_and_the_tables_keep_it():
    s = replace(SETTINGS["cpu"], third_seed_within=2)
    groups = {("main", "LoRA r=e"): {0: 1.2, 1: 1.0}, ("main", "MoS"): {0: 1.5, 1: 1.4},
              ("ablations", "MoS w/o pair dissociation"): {0: 1.52, 1: 1.39}}
    runs = _settled(s, groups)
    third = {(r.stage, r.label) for r in plan(s, runs) if r.seed == 2}
    assert third == {("ablations", "MoS w/o pair dissociation"), ("main", "MoS")}
    runs += _settled(s, {k: {2: 1.45} for k in third})[-2:]  # the two seed-2 rows, recorded
    df = pd.DataFrame(runs)
    assert not superseded(df, s).any()  # a third seed at the picked rate is a current row, not a stale one
