"""Tables and a plot from ``results/replication/<setting>/runs.csv``: what the grid has shown so far.

Written next to the CSV: ``tables.md`` (regime check, main table, learning rates, ablations) and
``score_vs_params.png``. Means and standard deviations are over seeds; "Δ vs X" is the paired difference
(same seed) to the reference row X, as mean ± std over the seeds both have, so a reader can see whether a
gap is larger than the noise. Losses: lower is better; accuracies: higher is better.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from replication.grid import LR_LADDER, Setting, plan, resolve_lr, run_key, sweep_state

METRICS = ("seen_loss", "unseen_loss", "mmlu_cloze", "arc_easy", "mmlu_letter")
SHOWN = {"seen_loss": "held-in loss", "unseen_loss": "unseen-task loss", "mmlu_cloze": "MMLU cloze",
         "arc_easy": "ARC-Easy", "mmlu_letter": "MMLU letter"}


def _fmt(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def paired_delta(df: pd.DataFrame, label: str, ref: str, metric: str) -> str:
    # The untrained base model has no seed of its own: pairing it with a seed of the reference is meaningless.
    if (df[df.label.isin([label, ref])].stage == "base").any():
        return ""
    a = df[df.label == label].set_index("seed")[metric].astype(float)
    b = df[df.label == ref].set_index("seed")[metric].astype(float)
    both = a.index.intersection(b.index)
    if both.empty or label == ref:
        return ""
    d = a[both] - b[both]
    return f"{d.mean():+.4f}" + (f" ± {d.std(ddof=1):.4f}" if len(d) > 1 else "") + f" (n={len(d)})"


# Metrics shown as paired differences to the reference row (MMLU letter is at chance at this scale: left out).
DELTAS = ("seen_loss", "unseen_loss", "arc_easy", "mmlu_cloze")


def method_table(df: pd.DataFrame, labels: list[str], ref: str, metrics=METRICS, deltas=DELTAS, shown=SHOWN,
                 also_vs: tuple[str, ...] = ()) -> str:
    """One row per label: trainable parameters, seeds, each metric as mean ± std over seeds, and the paired Δ of each
    of ``deltas`` against ``ref`` (then against each label of ``also_vs``, for the rows other than that label)."""
    refs = [ref, *also_vs]
    head = ["run", "trainable params", "seeds", *[shown[m] for m in metrics],
            *[f"Δ {shown[m]} vs {r}" for r in refs for m in deltas]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in labels:
        rows = df[df.label == label]
        if rows.empty:
            continue
        params = int(float(rows.trainable_params.iloc[0] or 0))
        cells = [label, f"{params:,}", str(len(rows)), *[_fmt(rows[m]) for m in metrics],
                 *[paired_delta(df, label, r, m) for r in refs for m in deltas]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(df: pd.DataFrame, metrics=METRICS, deltas=DELTAS, shown=SHOWN) -> str:
    """MoS (its main rows) and each ablation of the grid, in grid order, with paired Δs against MoS."""
    ablations = df[df.stage == "ablations"]
    return method_table(pd.concat([ablations, df[(df.stage == "main") & (df.label == "MoS")]]),
                        ["MoS", *dict.fromkeys(ablations.label)], "MoS", metrics, deltas, shown)


def lr_table(df: pd.DataFrame, loss_only: bool = False) -> str:
    """The sweeps; ``loss_only``: a setting scored on its held-out loss alone (a pilot)."""
    sweep = df[df.stage == "lr"]
    cols = ["seen_loss"] if loss_only else ["seen_loss", "unseen_loss", "arc_easy", "mmlu_cloze"]
    names = ["held-out loss"] if loss_only else [SHOWN[c] for c in cols]
    lines = ["| method | lr | " + " | ".join(names) + " | picked |", "|" + "---|" * (len(cols) + 3)]
    for label, rows in sweep.groupby("label", sort=False):
        best, extend = sweep_state(label, rows.to_dict("records"))
        ordered = rows.sort_values("lr", key=lambda s: s.astype(float))
        # A pick at the end of the ladder was not bracketed by a worse rate on that side: say so.
        pick = "✓ (end of the rate ladder: untested beyond)" if best in (LR_LADDER[0], LR_LADDER[-1]) and best in (
            ordered.lr.iloc[0], ordered.lr.iloc[-1]) else "✓"
        for _, r in ordered.iterrows():
            values = " | ".join(f"{float(r[c]):.4f}" for c in cols)
            lines.append(f"| {label} | {r.lr} | {values} | {pick if r.lr == best else ''} |")
        if extend is not None:
            lines.append(f"| {label} | {extend} | (best so far is at the edge: this rate is added next) |"
                         + " |" * len(cols))
    return "\n".join(lines)


def superseded(df: pd.DataFrame, s: Setting) -> pd.Series:
    """Rows of runs.csv recorded for a stage at a rate that is no longer that method's pick (its sweep was
    extended after they ran, see ``grid.sweep_state``): kept in runs.csv, left out of the tables."""
    runs = df.to_dict("records")
    waiting = [row for row in plan(s, runs) if row.lr.startswith("best:")]
    picked = {(row.stage, row.label) for row in waiting}
    current = {(row.stage, row.label, run_key(row, lr)) for row in waiting
               if (lr := resolve_lr(row, runs)) is not None}
    return pd.Series([(st, lab) in picked and (st, lab, key) not in current
                      for st, lab, key in zip(df.stage, df.label, df.run_key)], index=df.index, dtype=bool)


def _number(value) -> float | None:
    """A CSV cell as a float; None when it is empty (NaN) or absent."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def train_seconds(row, max_steps: int) -> tuple[float | None, str]:
    """A run's training time as if uninterrupted, and how it was obtained: "measured", "estimated", "partial"
    (a row from before ``resumed_step`` was recorded: a resumed one counts its last segment only) or "unknown".

    A resumed run records its last segment only (``train_s``, of which ``train_loop_s`` is the Trainer's loop over
    steps ``resumed_step``..``max_steps``): its loop time is scaled to all steps, and the segment's start-up kept.
    A run whose training had finished before the runner was restarted records ``train_s`` 0: the loop time stands.
    One resumed from its very last checkpoint trained no step in the recorded segment: its time is unknown."""
    train_s = _number(getattr(row, "train_s", None)) or 0.0
    loop = _number(getattr(row, "train_loop_s", None))
    step = _number(getattr(row, "resumed_step", None))
    if loop is None:
        return train_s, "partial" if train_s and step is None else "measured"
    if step and step >= max_steps:
        return None, "unknown"
    train_s = max(train_s, loop)
    if step and step > 0:
        return train_s - loop + loop * max_steps / (max_steps - step), "estimated"
    return train_s, "measured"


def runs_table(df: pd.DataFrame, max_steps: int) -> str:
    """Every run once (a run recorded for several stages shares its key): wall times; commands are in runs.csv."""
    lines = ["| run | stages | trainable params | train min | score min |", "|---|---|---|---|---|"]
    total, kinds = 0.0, set()
    for key, rows in df.groupby("run_key", sort=False):
        first = next(rows.itertuples())
        train_s, kind = train_seconds(first, max_steps)
        score_s = _number(first.score_s) or 0.0
        total += (train_s or 0.0) + score_s
        kinds.add(kind)
        stages = ", ".join(dict.fromkeys(f"{r.stage}: {r.label}" for r in rows.itertuples()))
        params = int(_number(first.trainable_params) or 0)
        if kind == "unknown":
            shown = "not recorded (resumed after its last step)"
        else:
            shown = f"{train_s / 60:.1f}" + (f" (resumed at step {int(first.resumed_step)})" if kind == "estimated" else "")
        lines.append(f"| `{key}` | {stages} | {params:,} | {shown} | {score_s / 60:.1f} |")
    lines.append(f"\n{df.run_key.nunique()} runs, {total / 3600:.2f} h of wall time in all (runs that went in parallel "
                 "overlap" + (", runs with no recorded training time not counted" if "unknown" in kinds else "")
                 + "). The exact launcher command of each row is the `command` column of runs.csv.")
    if "estimated" in kinds:
        lines.append("A run resumed after an interruption shows its training time as if uninterrupted: the last "
                     f"segment's training loop scaled from the steps it ran to all {max_steps}, plus its start-up.")
    if "partial" in kinds:
        lines.append("Rows recorded before runs.csv had a `resumed_step` column show the last training segment only: "
                     "those resumed after an interruption understate their training time.")
    return "\n".join(lines)


DECIDE_NATS = 0.03  # a regime decides when LoRA r=8e beats LoRA r=e by this much held-out loss in every seed ...
DECIDE_SPREADS = 3  # ... and by this many times the paired spread


def capacity_verdict(df: pd.DataFrame) -> str:
    """Does adapter capacity decide in this setting? LoRA r=8e against LoRA r=e, each at its own rate (main stage),
    paired by seed on held-out loss: it decides when every seed's Δ ≤ -DECIDE_NATS and |mean Δ| ≥ DECIDE_SPREADS x
    the std of the Δs (two seeds at least)."""
    main = df[df.stage == "main"]
    a = main[main.label == "LoRA r=8e"].set_index("seed")["seen_loss"].astype(float)
    b = main[main.label == "LoRA r=e"].set_index("seed")["seen_loss"].astype(float)
    both = a.index.intersection(b.index)
    if len(both) < 2:
        return (f"Not decided yet: LoRA r=8e and LoRA r=e, each at its own rate, have {len(both)} paired seed(s) of "
                "the two needed.")
    d = (a[both] - b[both]).sort_index()
    mean, std = d.mean(), d.std(ddof=1)
    decides = bool((d <= -DECIDE_NATS).all() and abs(mean) >= DECIDE_SPREADS * std)
    tokens = main.get("supervised_tokens", pd.Series(dtype=float)).pipe(pd.to_numeric, errors="coerce").dropna()
    per_seed = ", ".join(f"seed {seed}: {x:+.4f}" for seed, x in d.items())
    lines = [f"Held-out loss, LoRA r=8e − LoRA r=e (paired by seed, each at its own rate): {mean:+.4f} ± {std:.4f} "
             f"({per_seed}).",
             f"**{'Decides' if decides else 'Does not decide'}**: the rule is every seed ≤ −{DECIDE_NATS} nats and "
             f"|mean| ≥ {DECIDE_SPREADS}× the paired spread ({DECIDE_SPREADS * std:.4f})."]
    if not tokens.empty:
        lines.append(f"Supervised tokens per run: {tokens.mean():,.0f} (targets trained on, in expectation).")
    return "\n".join(lines)


MAIN_LABELS = ["base model", "LoRA r=e", "MoS", "VeRA", "Tied-LoRA", "PRoLoRA", "LoRA r=4e", "LoRA r=8e"]
PLOT_ORDER = ("LoRA r=e", "MoS", "VeRA", "Tied-LoRA", "PRoLoRA", "LoRA r=4e", "LoRA r=8e")


def plot(df: pd.DataFrame, path: Path, metrics=("seen_loss", "unseen_loss", "arc_easy"), shown=SHOWN) -> None:
    """Score vs trainable parameters (log x) for the main table: mean ± std over seeds per method, one panel per
    metric; the untrained base model's score is each panel's title (it has no parameters to place on a log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = df[df.stage.isin(["main", "baselines"])]
    if main.empty:
        return
    base = df[df.stage == "base"]
    labels = [lab for lab in PLOT_ORDER if lab in set(main.label)] + sorted(set(main.label) - set(PLOT_ORDER))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.2), squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, metrics):
        for i, label in enumerate(labels):
            rows = main[main.label == label]
            y = rows[metric].astype(float)
            ax.errorbar(rows.trainable_params.astype(float).mean(), y.mean(), yerr=y.std(ddof=1) if len(y) > 1 else 0,
                        fmt="*" if label == "MoS" else "o", markersize=12 if label == "MoS" else 6, capsize=3,
                        color=f"C{i}", label=f"{label} (n={len(y)})")
        if not base.empty:  # as a number: a line far above the methods would squash them together
            ax.set_title(f"untrained base model: {float(base[metric].astype(float).mean()):.3f}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(shown[metric] + (" (lower is better)" if metric.endswith("loss") else " (higher is better)"))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Main table: each method at its own learning rate; error bars = std over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def stale_note(everything: pd.DataFrame, stale: pd.Series) -> str:
    """The rows recorded at a rate that is not (or not yet) their method's pick, which the tables leave out."""
    return ("Recorded at a rate that is not (or not yet) the method's pick, because its sweep was extended after they "
            "ran, so left out of the tables above: "
            + ", ".join(f"`{k}` ({st}: {lab})" for k, st, lab in
                        zip(everything.run_key[stale], everything.stage[stale], everything.label[stale])) + ".")


def write_report(results_dir: Path, setting: Setting) -> int:
    table = results_dir / "runs.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table} does not exist yet; run `python -m replication run "
                                f"--setting {setting.name}` first")
    everything = pd.read_csv(table, dtype={"lr": str})
    stale = superseded(everything, setting)
    df = everything[~stale]
    if setting.scoring == "loss":  # a pilot: held-out loss only, LoRA r=e against LoRA r=8e
        return write_pilot_report(results_dir, setting, everything, df, stale)
    parts = [f"# Replication tables ({setting.name}: {setting.max_steps} steps, batch {setting.batch_size}, "
             f"sequence {setting.max_seq_length}, budget e = {setting.e})", "",
             f"{len(everything)} rows in runs.csv. Regenerate: `python -m replication report --setting "
             f"{setting.name}`.", "", "## Regime check: is LoRA r=8e better than LoRA r=e here?", "",
             method_table(df[df.stage == "regime"], ["LoRA r=e", "LoRA r=8e"], "LoRA r=e"), "",
             "## Does adapter capacity decide here? (LoRA r=8e vs LoRA r=e, each at its own rate)", "",
             capacity_verdict(df), "",
             "## Main table (each method at its best learning rate)", "",
             method_table(df[df.stage.isin(["main", "baselines", "base"])], MAIN_LABELS, "LoRA r=e"), "",
             "## Learning-rate sweeps (seed 0; picked on held-in loss)", "", lr_table(df), "",
             "## Ablations (at MoS's budget and rate)", "",
             ablation_table(df), "",
             "## Runs and wall times", "", runs_table(everything, setting.max_steps), ""]
    if stale.any():
        parts[-1:-1] = [stale_note(everything, stale), ""]
    (results_dir / "tables.md").write_text("\n".join(parts), encoding="utf-8")
    plot(df, results_dir / "score_vs_params.png")
    print("\n".join(parts))
    return 0


def plot_curves(df: pd.DataFrame, curves_csv: Path, path: Path,
                labels=("LoRA r=e", "MoS", "LoRA r=8e")) -> bool:
    """Learning curves of the main-table runs (each method at its own rate): the trainer's held-out loss against
    supervised tokens seen, one line per seed. Returns whether a figure was written."""
    if not curves_csv.is_file():
        return False
    curves = pd.read_csv(curves_csv, dtype={"lr": str})
    main = df[df.stage.isin(["main", "baselines"]) & df.label.isin(labels)]
    picked = curves[curves.run_key.isin(set(main.run_key))]
    if picked.empty:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, label in enumerate(labels):
        keys = set(main[main.label == label].run_key)
        for j, (_key, points) in enumerate(picked[picked.run_key.isin(keys)].groupby("run_key")):
            points = points.sort_values("step")
            seed = int(points.seed.iloc[0])
            ax.plot(points.supervised_tokens, points.eval_loss, marker="o", color=f"C{i}",
                    linestyle=("-", "--", ":")[j % 3], label=f"{label} (lr {points.lr.iloc[0]}, seed {seed})")
    ax.set_xlabel("supervised tokens seen")
    ax.set_ylabel("held-out loss of the trainer's split (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_pilot_report(results_dir: Path, setting: Setting, everything: pd.DataFrame, df: pd.DataFrame,
                       stale: pd.Series) -> int:
    """The tables of a setting scored on held-out loss alone (the columns it does not score are left out): the
    verdict, the methods at their own rates, the sweeps, the runs. A pilot (``setting.labels``) has LoRA r=e and
    r=8e only; the full grid of such a setting adds every method (Δ against LoRA r=e and LoRA r=8e), the ablations
    (Δ against MoS) and ``score_vs_params.png``."""
    metrics, shown = ("seen_loss",), {"seen_loss": "held-out loss"}
    pilot = bool(setting.labels)
    labels = ["base model", *setting.labels] if pilot else MAIN_LABELS
    precision = sorted({str(p) for p in everything.get("precision", pd.Series(dtype=str)).dropna() if str(p)})
    tokens = everything.get("supervised_tokens", pd.Series(dtype=float)).dropna()
    title = (f"# Regime pilot {setting.name}" if pilot else
             f"# Replication tables ({setting.name}, held-out loss only)")
    parts = [f"{title}: {setting.max_steps} steps, batch {setting.batch_size}, sequence "
             f"{setting.max_seq_length}, data {setting.data}, budget e = {setting.e}", "",
             f"{len(everything)} rows in runs.csv; training precision {', '.join(precision) or '(no trained row yet)'}"
             + (f"; supervised tokens per run {int(tokens.astype(float).mean()):,}" if not tokens.empty else "")
             + f". Regenerate: `python -m replication report --setting {setting.name}`.", "",
             "## Does adapter capacity decide here? (LoRA r=8e vs LoRA r=e, each at its own rate)", "",
             capacity_verdict(df), ""]
    if pilot:
        parts += ["## Each reference at its own learning rate", "",
                  method_table(df[df.stage.isin(["main", "base"])], labels, "LoRA r=e", metrics, metrics, shown), ""]
    else:
        parts += ["## Main table (each method at its own best learning rate)", "",
                  method_table(df[df.stage.isin(["main", "baselines", "base"])], labels, "LoRA r=e", metrics, metrics,
                               shown, also_vs=("LoRA r=8e",)), "",
                  "## Ablations (at MoS's budget and rate)", "", ablation_table(df, metrics, metrics, shown), ""]
        if setting.third_seed_within:
            parts += [f"A compared pair whose Δ over seeds 0 and 1 is within {setting.third_seed_within:g}× its "
                      "spread gets seed 2 on both sides (`grid.third_seeds`).", ""]
    parts += ["## Learning-rate sweeps (seed 0; picked on held-out loss)", "", lr_table(df, loss_only=True), "",
              "## Runs and wall times", "", runs_table(everything, setting.max_steps), ""]
    if stale.any():
        parts[-1:-1] = [stale_note(everything, stale), ""]
    if plot_curves(df, results_dir / "curves.csv", results_dir / "learning_curve.png"):
        parts[-1:-1] = ["Learning curves (`curves.csv`, the trainer's held-out split evaluated during each run): "
                        "`learning_curve.png`.", ""]
    if not pilot:
        plot(df, results_dir / "score_vs_params.png", metrics, shown)
    (results_dir / "tables.md").write_text("\n".join(parts), encoding="utf-8")
    print("\n".join(parts))
    return 0
