"""The report's paired differences: same-seed pairs only, and none for the seedless base model."""

import pandas as pd

from replication.report import method_table, paired_delta


def _frame():
    rows = [
        # stage, label, seed, seen_loss
        ("base", "base model", 0, 2.8),
        ("main", "LoRA r=e", 0, 1.5),
        ("main", "LoRA r=e", 1, 1.4),
        ("main", "MoS", 0, 1.6),
        ("main", "MoS", 1, 1.7),
        ("main", "MoS", 2, 9.9),  # no LoRA partner for seed 2: must not enter the difference
    ]
    df = pd.DataFrame(rows, columns=["stage", "label", "seed", "seen_loss"])
    for col in ("unseen_loss", "mmlu_cloze", "arc_easy", "mmlu_letter"):
        df[col] = 0.5
    df["trainable_params"] = 10
    return df


def test_paired_delta_uses_same_seed_pairs_only():
    # differences 1.6-1.5 = 0.1 and 1.7-1.4 = 0.3: mean 0.2, sample std sqrt(0.02) = 0.1414
    assert paired_delta(_frame(), "MoS", "LoRA r=e", "seen_loss") == "+0.2000 ± 0.1414 (n=2)"


def test_paired_delta_is_empty_for_the_base_model_and_the_reference_itself():
    df = _frame()
    assert paired_delta(df, "base model", "LoRA r=e", "seen_loss") == ""
    assert paired_delta(df, "LoRA r=e", "LoRA r=e", "seen_loss") == ""
    base_line = [line for line in method_table(df, ["base model", "MoS"], "LoRA r=e").splitlines()
                 if line.startswith("| base model")][0]
    assert base_line.rstrip(" |").endswith("0.5000"), base_line  # the Δ cells are empty


def test_method_table_shows_each_paired_difference_under_its_own_header():
    df = _frame()
    df.loc[(df.label == "MoS") & (df.seed == 0), "unseen_loss"] = 0.9  # Δ unseen-task: +0.4 (seed 0), 0.0 (seed 1)
    lines = method_table(df, ["LoRA r=e", "MoS"], "LoRA r=e").splitlines()
    head = [cell.strip() for cell in lines[0].strip("|").split("|")]
    mos = [cell.strip() for cell in next(line for line in lines if line.startswith("| MoS")).strip("|").split("|")]
    assert len(head) == len(mos)
    row = dict(zip(head, mos))
    assert row["Δ held-in loss vs LoRA r=e"] == "+0.2000 ± 0.1414 (n=2)"
    assert row["Δ unseen-task loss vs LoRA r=e"] == "+0.2000 ± 0.2828 (n=2)"
    assert row["Δ ARC-Easy vs LoRA r=e"] == "+0.0000 ± 0.0000 (n=2)"


def test_learning_curve_figure_draws_the_main_table_runs_only(tmp_path):
    from replication.report import plot_curves

    df = pd.DataFrame([{"stage": "main", "label": "LoRA r=e", "run_key": "a"},
                       {"stage": "lr", "label": "LoRA r=e", "run_key": "b"}])
    curves = tmp_path / "curves.csv"
    pd.DataFrame([{"run_key": k, "label": "LoRA r=e", "seed": 0, "lr": "1e-3", "step": st,
                   "supervised_tokens": 100 * st, "eval_loss": 2.0 - 0.1 * st} for k in "ab" for st in (1, 2)]
                 ).to_csv(curves, index=False)
    assert plot_curves(df, curves, tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 0
    assert not plot_curves(df[df.stage == "lr"], curves, tmp_path / "d.png")  # a sweep row is not a main run
    assert not (tmp_path / "d.png").exists()
    assert not plot_curves(df, tmp_path / "none.csv", tmp_path / "e.png")


def test_a_loss_scored_full_grid_reports_every_method_and_the_ablations(tmp_path):
    """A setting scored on held-out loss alone, beyond its pilot (labels=()): the main table has every method with
    Δ against LoRA r=e and LoRA r=8e, the ablations table Δ against MoS, and score_vs_params.png is drawn."""
    from dataclasses import replace

    from replication.grid import SETTINGS, plan, run_key
    from replication.report import write_report

    s = replace(SETTINGS["tiny_text"], labels=(), stages=())
    losses = {("main", "LoRA r=e"): (3.30, 3.20), ("main", "MoS"): (3.25, 3.21), ("main", "LoRA r=8e"): (3.20, 3.08),
              ("ablations", "MoS w/o subset selection"): (3.35, 3.24)}
    rows = plan(s, [])
    records = [{"stage": "base", "label": "base model", "seed": 0, "lr": "-", "run_key": "base", "seen_loss": 4.9}]
    for label in ("LoRA r=e", "MoS", "LoRA r=8e"):  # every sweep picks 1e-3
        row = next(r for r in rows if r.stage == "lr" and r.label == label)
        records += [{"stage": "lr", "label": label, "seed": 0, "lr": lr, "run_key": run_key(row, lr),
                     "seen_loss": x} for lr, x in (("3e-4", 3.9), ("1e-3", losses["main", label][0]), ("3e-3", 3.9))]
    for (stage, label), pair in losses.items():
        for seed, x in enumerate(pair):
            row = next(r for r in rows if (r.stage, r.label, r.seed) == (stage, label, seed))
            records.append({"stage": stage, "label": label, "seed": seed, "lr": "1e-3",
                            "run_key": run_key(row, "1e-3"), "seen_loss": x})
    df = pd.DataFrame(records).assign(trainable_params=10, train_s=60, score_s=6, precision="bf16",
                                      supervised_tokens=1000)
    df.to_csv(tmp_path / "runs.csv", index=False)
    assert write_report(tmp_path, s) == 0
    text = (tmp_path / "tables.md").read_text(encoding="utf-8")
    assert "unseen-task" not in text and "ARC" not in text  # not scored here

    def cells(heading, label):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0].splitlines()
        head = [c.strip() for c in next(x for x in section if x.startswith("| run")).strip("|").split("|")]
        row = [c.strip() for c in next(x for x in section if x.startswith(f"| {label} |")).strip("|").split("|")]
        return dict(zip(head, row))

    mos = cells("## Main table", "MoS")
    # Δ vs LoRA r=e: -0.05, +0.01 -> -0.0200 ± 0.0424; vs LoRA r=8e: +0.05, +0.13 -> +0.0900 ± 0.0566
    assert mos["Δ held-out loss vs LoRA r=e"] == "-0.0200 ± 0.0424 (n=2)"
    assert mos["Δ held-out loss vs LoRA r=8e"] == "+0.0900 ± 0.0566 (n=2)"
    assert cells("## Main table", "LoRA r=8e")["Δ held-out loss vs LoRA r=8e"] == ""
    ablation = cells("## Ablations", "MoS w/o subset selection")
    assert ablation["Δ held-out loss vs MoS"] == "+0.0650 ± 0.0495 (n=2)"  # +0.10, +0.03
    assert (tmp_path / "score_vs_params.png").stat().st_size > 0
    # the pilot of the same setting keeps its two-reference table and draws no parameter plot
    (tmp_path / "score_vs_params.png").unlink()
    assert write_report(tmp_path, replace(s, labels=("LoRA r=e", "LoRA r=8e"), stages=("lr", "main"))) == 0
    text = (tmp_path / "tables.md").read_text(encoding="utf-8")
    assert "## Main table" not in text and "Regime pilot" in text and not (tmp_path / "score_vs_params.png").exists()
