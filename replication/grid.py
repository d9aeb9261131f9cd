"""The replication grid: settings (how long, how big) and rows (which method, at which rate and seed).

Rows are ordered so that the most informative come first, and each has a stable id, so a results table can
say which rows are done:

1. ``regime``     LoRA r=e vs LoRA r=8e, two seeds: is this setting limited by adapter capacity at all?
2. ``lr``         learning-rate sweeps (3 rates spanning 10x, extended at an edge), seed 0: LoRA r=e and MoS first,
                  then the references LoRA r=4e and LoRA r=8e (α stays fixed, so a larger rank has a smaller update
                  scale α/r: a reference is compared at its own rate, never at another method's)
3. ``main``       LoRA r=e, MoS, LoRA r=4e, LoRA r=8e, seeds 0 and 1, each at its own best rate (LoRA r=e's and
                  MoS's rows come before the references' sweeps: the comparison at one budget is ready first)
4. ``baselines``  VeRA, Tied-LoRA, PRoLoRA: sweep on seed 0, then seeds 0 and 1 at the best rate
5. ``ablations``  MoS without each differentiation strategy, plus pure sharing and random scaling, two seeds

Where a setting asks for it (``third_seed_within``), a comparison whose two seeds do not separate it from noise
gets a third seed (see ``third_seeds``).

"Best rate" is picked on held-in loss (``seen_loss``, unseen instances of the training tasks) among the
finished sweep rows of that method; a row whose rate depends on a sweep that has not finished waits. A sweep
whose best rate is its highest (or lowest) is not settled: the next rate of ``LR_LADDER`` in that direction
is added to it (one more seed-0 row), until the best rate has a worse neighbour on both sides or the ladder
ends, so no method is compared at a rate that is only the edge of the range tried.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

LR_SWEEP = ("3e-4", "1e-3", "3e-3")                                # every sweep starts with these
# and extends along this at an edge; it reaches 1e0 because VeRA, which trains only scaling vectors, can still be
# improving at 1e-1 (pilot_de: 3.434 at 3e-2, 3.410 at 1e-1)
LR_LADDER = ("1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1", "3e-1", "1e0")
SEEDS = (0, 1)
THIRD_SEED = 2


@dataclass(frozen=True)
class Setting:
    """How each run trains and is scored; recorded in every result row."""

    name: str
    max_steps: int
    batch_size: int
    max_seq_length: int
    e: int = 2                # parameter budget of the comparison, in LoRA ranks
    mos_r: int = 8            # MoS's materialised rank at that budget
    mos_p: int = 1
    mos_c: int = 4
    tied_lora_r: int = 44     # Tied-LoRA rank whose trainable parameters are closest to LoRA r=e
    vera_r: int = 256         # VeRA cannot reach the budget at a sane rank; the paper's r
    seen_per_task: int = 1    # held-out instances per training task to score
    unseen_max: int = 200     # held-out instances of unseen tasks to score
    mmlu_per_subject: int = 3  # MMLU subset: this many test questions of each of the 57 subjects
    arc_easy_n: int = 300
    eval_batch_size: int = 16
    lora_modules: str = "all"  # the launcher's --lora_modules ("all" = the seven projections, as in the paper)
    extra_env: tuple = field(default_factory=tuple)  # (("VAR", "value"), ...) for the launcher
    labels: tuple = ()        # only the rows of these methods (a pilot: ("LoRA r=e", "LoRA r=8e")); () = all
    stages: tuple = ()        # only these stages (a pilot: ("lr", "main")); () = all
    data: str = "superni"     # training data: superni (BIG-bench -> SuperNI path), math or german (pilots.py)
    scoring: str = "full"     # full: every metric of score.py; loss: the held-out loss only (seen_loss)
    curve_points: int = 0     # >0: the trainer evaluates its held-out split this many times per run (learning curve)
    third_seed_within: float = 0.0  # >0: a compared pair whose paired Δ held-in loss over seeds 0 and 1 is within this
    #                                 many spreads (|mean| < k x std) gets seed 2 on both sides (see third_seeds)


SETTINGS = {
    # 2-core CPU, two 1-thread runs at once (scripts/replicate.sh's default): about 5 s per step each at batch
    # 4 x 160 (SmolLM2-135M), so a pair of runs takes ~53 min of training plus ~12 min of scoring (measured).
    "cpu": Setting("cpu", max_steps=600, batch_size=4, max_seq_length=160),
    # The same with adapters on q_proj and v_proj only: 5.3x fewer adapter parameters per rank, a candidate for a
    # capacity-limited regime if "cpu" shows LoRA r=e ~ LoRA r=8e (run `--stages regime` on both first).
    "cpu_qv": Setting("cpu_qv", max_steps=600, batch_size=4, max_seq_length=160, tied_lora_r=46,
                      lora_modules="q_proj,v_proj"),
    # Regime pilots (LoRA r=e vs LoRA r=8e, each at its own rate, two seeds).
    # Long supervised answers: MATH solutions at sequence 512 (~900 targets per step, ~0.32 M per run). Trained in
    # bf16 (bf16 base weights, float32 adapter; scored in float32): one thread beside another run, a step took 32 s
    # in float32 and 16 s in bf16 (bench/throughput.py, native-bf16 CPU; loss after 8 steps +0.002), i.e. ~2.9 h
    # against ~1.4 h of training per run: only bf16 fits a run into one session. Refused on CPUs without native bf16.
    "pilot_math": Setting("pilot_math", max_steps=360, batch_size=4, max_seq_length=512, data="math",
                          scoring="loss", labels=("LoRA r=e", "LoRA r=8e"), stages=("lr", "main"),
                          eval_batch_size=8, curve_points=4, extra_env=(("PRECISION", "bf16"),)),
    # Continued pretraining on German text, loss on every token: 400 steps x 4 x 256 = 0.41 M targets, one pass.
    # Trained in bf16 like pilot_math (float32: 17.7 s/step with the cores shared, ~2 h per run; bf16 at 4 x 256 is
    # ~1.6-2x faster on a native-bf16 CPU, bench/throughput.py), so a run and its scoring fit in one session.
    # Its pilot decided (LoRA r=8e - LoRA r=e = -0.084 +- 0.004 held-out loss, seeds -0.087 and -0.081), so it runs
    # the full grid: every method and reference swept, the main table, the baselines and the ablations (the regime
    # stage is left out: the main rows at each reference's own rate answer it), and a third seed wherever a compared
    # pair's Δ over seeds 0 and 1 is within 2x its spread. The pilot's rows are reused (same run keys).
    "pilot_de": Setting("pilot_de", max_steps=400, batch_size=4, max_seq_length=256, data="german",
                        scoring="loss", stages=("lr", "main", "baselines", "ablations"), third_seed_within=2,
                        eval_batch_size=8, curve_points=4, extra_env=(("TRAIN_FORMAT", "text"), ("PRECISION", "bf16"))),
    # Candidate (c) of the regime search: pilot_de's data and run with the narrowest scope, adapters on q_proj and
    # v_proj only at the smallest budget e = 1 (LoRA r=1, 57,600 parameters, against r=8, 460,800, on SmolLM2-135M).
    # Run it if neither pilot_de nor pilot_math decides. Beyond the pilot (labels=()), MoS at e = 1 has no shard to
    # privatize (p < e), so mos_p is 0 here; Tied-LoRA r=17 is 56,700 parameters (1.6 % under the budget).
    "pilot_de_qv": Setting("pilot_de_qv", max_steps=400, batch_size=4, max_seq_length=256, data="german",
                           scoring="loss", labels=("LoRA r=e", "LoRA r=8e"), stages=("lr", "main"), e=1, mos_p=0,
                           tied_lora_r=17, lora_modules="q_proj,v_proj", eval_batch_size=8, curve_points=4,
                           extra_env=(("TRAIN_FORMAT", "text"), ("PRECISION", "bf16"))),
    # One GPU: longer and larger, the full held-out sets and larger benchmark subsets.
    # Untested so far: sized so that --parallel 8 on one H200 finishes the grid in well under an hour.
    "gpu": Setting("gpu", max_steps=2000, batch_size=16, max_seq_length=256, seen_per_task=10, unseen_max=10000,
                   mmlu_per_subject=1000, arc_easy_n=10000, eval_batch_size=64, extra_env=(("USE_QLORA", "0"),)),
    # The test suite's reduced run on a tiny model.
    "tiny": Setting("tiny", max_steps=2, batch_size=2, max_seq_length=64, e=2, mos_r=3, mos_p=1, mos_c=2,
                    tied_lora_r=4, vera_r=8, seen_per_task=1, unseen_max=4, mmlu_per_subject=1, arc_easy_n=4,
                    eval_batch_size=4, extra_env=(("MAX_EVAL_SAMPLES", "4"),)),
    # The test suite's reduced pilot: continued pretraining on text, held-out loss only.
    "tiny_text": Setting("tiny_text", max_steps=2, batch_size=2, max_seq_length=32, e=2, data="german",
                         scoring="loss", labels=("LoRA r=e", "LoRA r=8e"), stages=("lr", "main"), eval_batch_size=4,
                         curve_points=2, extra_env=(("MAX_EVAL_SAMPLES", "4"), ("TRAIN_FORMAT", "text"))),
}


@dataclass(frozen=True)
class Row:
    """One training run: a launcher call (r seed lr mode vec_value vec_std p e c) plus optional trainer flags."""

    stage: str
    label: str                 # what the row stands for, e.g. "LoRA r=e", "MoS w/o pair dissociation"
    mode: str
    r: int
    seed: int
    lr: str                    # a rate, or "best:<label>" = the best rate of that label's sweep
    p: int = 0
    e: int = 1
    c: int = 1
    vec_std: str = "0"
    extra_args: str = ""       # more finetune_trainer flags (the ablation switches)

    @property
    def row_id(self) -> str:
        parts = [self.stage, self.label, f"sd{self.seed}", f"lr{self.lr}"]
        return "|".join(parts)

    def launcher_args(self, lr: str) -> list[str]:
        return [str(self.r), str(self.seed), "0", lr, self.mode, "1", self.vec_std, str(self.p), str(self.e),
                str(self.c)]

    def as_dict(self) -> dict:
        return {**asdict(self), "row_id": self.row_id}


def build_grid(s: Setting) -> list[Row]:
    """All rows for setting ``s``, most informative first (see the module doc)."""
    e = s.e
    lora_e = dict(mode="lora", r=e, p=e, e=e, c=1)
    mos = dict(mode="mos", r=s.mos_r, p=s.mos_p, e=e, c=s.mos_c)
    rows: list[Row] = []
    # 1. regime check
    for seed in SEEDS:
        rows.append(Row("regime", "LoRA r=e", seed=seed, lr="1e-3", **lora_e))
        rows.append(Row("regime", "LoRA r=8e", mode="lora", r=8 * e, p=8 * e, e=8 * e, c=1, seed=seed, lr="1e-3"))
    # 2. learning-rate sweeps: the two methods the claim is about, then the larger-rank references
    refs = {"LoRA r=4e": dict(mode="lora", r=4 * e, p=4 * e, e=4 * e, c=1),
            "LoRA r=8e": dict(mode="lora", r=8 * e, p=8 * e, e=8 * e, c=1)}
    for lr in LR_SWEEP:
        rows.append(Row("lr", "LoRA r=e", seed=0, lr=lr, **lora_e))
        rows.append(Row("lr", "MoS", seed=0, lr=lr, **mos))
    # 3. main table, every method at its own best rate: MoS against LoRA r=e first (they wait only for their own
    #    sweeps), then the references' sweeps and seeds
    for seed in SEEDS:
        rows.append(Row("main", "LoRA r=e", seed=seed, lr="best:LoRA r=e", **lora_e))
        rows.append(Row("main", "MoS", seed=seed, lr="best:MoS", **mos))
    for label, kw in refs.items():
        for lr in LR_SWEEP:
            rows.append(Row("lr", label, seed=0, lr=lr, **kw))
    for seed in SEEDS:
        for label, kw in refs.items():
            rows.append(Row("main", label, seed=seed, lr=f"best:{label}", **kw))
    # 4. the other baselines at (about) the same budget
    baselines = {
        "VeRA": dict(mode="vera", r=s.vera_r, p=0, e=1, c=1),
        "Tied-LoRA": dict(mode="tied_lora", r=s.tied_lora_r, p=0, e=1, c=1),
        "PRoLoRA": dict(mode="prolora", r=s.mos_r, p=0, e=1, c=s.mos_r // e),
    }
    for label, kw in baselines.items():
        for lr in LR_SWEEP:
            rows.append(Row("lr", label, seed=0, lr=lr, **kw))
    for label, kw in baselines.items():
        for seed in SEEDS:
            rows.append(Row("baselines", label, seed=seed, lr=f"best:{label}", **kw))
    # 5. ablations at MoS's budget and rate
    ablations = {
        "MoS w/o subset selection": dict(mos, extra_args="--mos_subset_selection False"),
        "MoS w/o pair dissociation": dict(mos, extra_args="--mos_pair_dissociation False"),
        "MoS w/o vector sharding (c=1)": dict(mos, c=1),
        "MoS w/o shard privatization (p=0)": dict(mos, p=0),
        "pure sharing": dict(mos, p=0, extra_args="--mos_subset_selection False"),
        "random scaling": dict(mos, p=0, vec_std="1", extra_args="--mos_subset_selection False"),
    }
    for seed in SEEDS:
        for label, kw in ablations.items():
            rows.append(Row("ablations", label, seed=seed, lr="best:MoS", **kw))
    if s.labels:
        rows = [row for row in rows if row.label in s.labels]
    if s.stages:
        rows = [row for row in rows if row.stage in s.stages]
    return rows


def run_key(row: Row, lr: str) -> str:
    """Identity of a training run: the same key means the same launcher call (whatever stage asked for it)."""
    return "_".join(str(x) for x in (row.mode, f"r{row.r}", f"p{row.p}", f"e{row.e}", f"c{row.c}",
                                     f"std{row.vec_std}", f"lr{lr}", f"sd{row.seed}",
                                     row.extra_args.replace("--", "").replace(" ", "-") or "full"))


def _loss(value) -> float:
    """A recorded held-in loss; a missing or non-finite one (a diverged run) counts as worst."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.inf
    return x if math.isfinite(x) else math.inf


def sweep_state(label: str, runs: list[dict]) -> tuple[str | None, str | None]:
    """``(best, extend)`` for ``label``'s learning-rate sweep among the finished ``runs`` (runs.csv rows).

    ``best`` is the picked rate once the sweep is settled, else None. ``extend`` is a rate to add to the sweep
    because the best so far is at the edge of the rates tried (None when nothing is to be added)."""
    done = {r["lr"]: _loss(r["seen_loss"]) for r in runs if r["stage"] == "lr" and r["label"] == label}
    if not set(LR_SWEEP) <= set(done):
        return None, None  # the initial sweep has not finished
    tried = sorted(done, key=float)
    best = min(tried, key=done.get)  # on a tie, the lower rate
    if best in LR_LADDER:
        i = LR_LADDER.index(best)
        if best == tried[-1] and i + 1 < len(LR_LADDER):
            return None, LR_LADDER[i + 1]
        if best == tried[0] and i > 0:
            return None, LR_LADDER[i - 1]
    return best, None


def resolve_lr(row: Row, runs: list[dict]) -> str | None:
    """A fixed rate, or the settled best rate of the sweep named after ``best:`` (None while it is not)."""
    if not row.lr.startswith("best:"):
        return row.lr
    return sweep_state(row.lr.split(":", 1)[1], runs)[0]


def comparisons(rows: list[Row]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The paired differences the tables report, as ``((stage, label), (reference stage, reference label))``:
    every main-table method against LoRA r=e, MoS also against LoRA r=8e, and each ablation against MoS."""
    groups = list(dict.fromkeys((row.stage, row.label) for row in rows))
    out = [(g, ("main", "LoRA r=e")) for g in groups if g[0] in ("main", "baselines") and g[1] != "LoRA r=e"]
    out += [(("main", "MoS"), ("main", "LoRA r=8e"))]
    out += [(g, ("main", "MoS")) for g in groups if g[0] == "ablations"]
    return [(a, b) for a, b in out if a in groups and b in groups]


def third_seeds(s: Setting, rows: list[Row], runs: list[dict]) -> set[tuple[str, str]]:
    """``(stage, label)`` groups that get a third seed: both sides of each compared pair (``comparisons``) whose
    paired Δ held-in loss over seeds 0 and 1, at the rates picked now, is within ``s.third_seed_within`` spreads
    (|mean| < k x sample std). Decided on seeds 0 and 1 only, so the third seed does not change the decision."""
    if not s.third_seed_within:
        return set()
    by_key = {r["run_key"]: _loss(r.get("seen_loss")) for r in runs if r.get("run_key")}

    def losses(group):
        out = {}
        for row in rows:
            if (row.stage, row.label) == group and row.seed in SEEDS and (lr := resolve_lr(row, runs)) is not None:
                key = run_key(row, lr)
                if key in by_key:
                    out[row.seed] = by_key[key]
        return out

    need = set()
    for group, ref in comparisons(rows):
        a, b = losses(group), losses(ref)
        if not all(seed in a and seed in b for seed in SEEDS):
            continue
        d = [a[seed] - b[seed] for seed in SEEDS]
        mean = sum(d) / len(d)
        std = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
        if math.isfinite(mean) and abs(mean) < s.third_seed_within * std:
            need |= {group, ref}
    return need


def plan(s: Setting, runs: list[dict]) -> list[Row]:
    """``build_grid(s)`` plus what the finished ``runs`` call for: the sweep extensions, each right after its
    method's last sweep row (so it runs before the rows that wait for that method's rate), and the third seeds
    (``third_seeds``), each after the last row of its stage."""
    rows = build_grid(s)
    last = {row.label: i for i, row in enumerate(rows) if row.stage == "lr"}
    extra = {}
    for label, i in last.items():
        rate = sweep_state(label, runs)[1]
        if rate is not None:
            extra[i] = [replace(rows[i], lr=rate)]
    need = third_seeds(s, rows, runs)
    for stage in dict.fromkeys(row.stage for row in rows):
        i = max(j for j, row in enumerate(rows) if row.stage == stage)
        extra.setdefault(i, []).extend(replace(row, seed=THIRD_SEED) for row in rows
                                       if row.stage == stage and row.seed == SEEDS[-1]
                                       and (row.stage, row.label) in need)
    out = []
    for i, row in enumerate(rows):
        out.append(row)
        out.extend(extra.get(i, []))
    return out
