"""Wall times of resumed runs, and a runs.csv written before a column was added."""

import csv
from types import SimpleNamespace

import pytest

from replication.__main__ import RUN_COLUMNS, append_run, read_runs
from replication.report import runs_table, train_seconds


def _row(**kw):
    return SimpleNamespace(**{"train_s": "", "train_loop_s": "", "resumed_step": "", **kw})


def test_resumed_run_is_scaled_to_all_steps():
    # last segment: 100 s of start-up + 900 s of loop over steps 400..600 -> 100 + 900 * 600 / 200
    assert train_seconds(_row(train_s=1000, train_loop_s=900, resumed_step=400), 600) == (2800.0, "estimated")


def test_uninterrupted_and_older_runs_are_as_measured():
    assert train_seconds(_row(train_s=1000, train_loop_s=900, resumed_step=0), 600) == (1000.0, "measured")
    # a row from before the columns existed: as recorded, flagged (if it was resumed it counts one segment)
    assert train_seconds(_row(train_s=1000), 600) == (1000.0, "partial")
    assert train_seconds(_row(train_s=0), 600) == (0.0, "measured")  # the base model: no training
    # training had finished before the runner restarted (train_s 0): the Trainer's loop time stands
    assert train_seconds(_row(train_s=0, train_loop_s=900, resumed_step=0), 600) == (900.0, "measured")


def test_run_resumed_after_its_last_step_has_no_training_time():
    assert train_seconds(_row(train_s=90, train_loop_s=1, resumed_step=600), 600) == (None, "unknown")


def test_runs_table_marks_the_estimate():
    import pandas as pd

    df = pd.DataFrame([dict(run_key="a", stage="main", label="MoS", trainable_params=10, train_s=1000,
                            train_loop_s=900, resumed_step=400, score_s=60)])
    text = runs_table(df, 600)
    assert "| `a` | main: MoS | 10 | 46.7 (resumed at step 400) | 1.0 |" in text
    assert "as if uninterrupted" in text and "before runs.csv had" not in text and "not counted" not in text
    df.loc[0, "resumed_step"] = 600
    text = runs_table(df, 600)
    assert "| not recorded (resumed after its last step) | 1.0 |" in text and "0.02 h" in text and "not counted" in text


def test_append_upgrades_an_older_table_and_keeps_its_rows(tmp_path):
    path = tmp_path / "runs.csv"
    old_columns = [c for c in RUN_COLUMNS if c not in ("resumed_step", "train_loop_s")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns)
        writer.writeheader()
        writer.writerow({c: f"old-{c}" for c in old_columns})
    append_run(path, {"run_key": "new", "resumed_step": 0, "train_loop_s": 5})
    with open(path, newline="") as f:
        assert next(csv.reader(f)) == list(RUN_COLUMNS)
    old, new = read_runs(path)
    assert all(old[c] == f"old-{c}" for c in old_columns) and old["resumed_step"] == ""
    assert new["run_key"] == "new" and new["resumed_step"] == "0" and new["train_loop_s"] == "5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]  # no temporary file left


def test_append_refuses_a_table_from_a_newer_version(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run_key,some_future_column\nx,1\n")
    with pytest.raises(ValueError, match="some_future_column"):
        append_run(path, {"run_key": "new"})
    assert path.read_text() == "run_key,some_future_column\nx,1\n"


def test_runs_table_of_a_table_without_the_new_columns():
    import pandas as pd

    df = pd.DataFrame([dict(run_key="a", stage="main", label="MoS", trainable_params=10, train_s=600, score_s=60)])
    text = runs_table(df, 600)
    assert "| `a` | main: MoS | 10 | 10.0 | 1.0 |" in text and "before runs.csv had" in text
