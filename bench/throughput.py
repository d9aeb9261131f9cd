"""Training and evaluation throughput: today's paths against the faster exact ones, side by side in one run.

A benchmark, not a test: it prints numbers and ratios, it never asserts them.

    .venv/bin/python bench/throughput.py train --threads 1           # tokens/s at batch 4 x 160 and 4 x 512
    .venv/bin/python bench/throughput.py mmlu --threads 1            # real MMLU 5-shot: s/question, vs lm-eval
    .venv/bin/python bench/throughput.py all --threads 1             # both
    .venv/bin/python bench/throughput.py train --quick               # smoke run on a tiny random model

``train``: SmolLM2-135M-Instruct (models/), a MoS adapter (r=8, e=2, p=1, c=4, all seven projections, dropout 0 so
that every variant sees the same computation), AdamW, the same batches for every variant, in the order the Trainer's
length-grouped sampler gives. At sequence 160 the batches come from the replication's training file (BIG-bench ->
SuperNI path), at 512 from the MATH pilot's (long solutions), each if prepared (``python -m replication
prepare [--setting pilot_math]``). Variants:

* ``fp32 padded (today)``: ``DataCollatorForSeq2Seq(padding="longest")``, logits at every position;
* ``+ supervised logits``: the vocabulary projection only where a target is (the trainer's default now);
* ``padding-free + supervised logits``: one row per batch, positions restarting per example (``PACKING=1``);
* ``bf16 autocast + supervised logits``: CPU autocast to bfloat16, every weight kept in float32;
* ``bf16 base weights + autocast + supervised logits``: the frozen base weights stored in bfloat16, the adapter's
  trainable weights in float32, autocast to bfloat16 (what ``PRECISION=bf16`` does, on GPU and on CPU).

Timed steps rotate through the variants (A B C D, D C B A, ...) so that drift and other load hit all of them alike;
tokens/s counts real (non-padding) tokens over the median step time. "loss@N" is the mean training loss of the last
half of the N steps: exact variants match today's to float rounding, bf16 within its rounding.

``mmlu``: real MMLU (data/eval/mmlu), 5-shot from the dev split, the first ``--subjects`` subjects with
``--per-subject`` test questions each (sampled like ``--n_instances``, random_state=42), SmolLM2 in float32:
this project's evaluator without and with the shared-prefix cache, and lm-eval's ``hf`` model on the same prompts
(a generated task per subject whose prompt is this evaluator's, character for character) where lm-eval is
installed. Seconds per question, accuracy, and how many answers agree with the uncached evaluator.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

MODEL = REPO / "models" / "smollm2-135m-instruct"
TRAIN_FILES = {160: REPO / "data/replication/processed/super_ni/super_ni_data.jsonl",
               512: REPO / "data/replication/math/train.jsonl"}
VARIANTS = ("fp32 padded (today)", "+ supervised logits", "padding-free + supervised logits",
            "bf16 autocast + supervised logits", "bf16 base weights + autocast + supervised logits")


# ---------------------------------------------------------------------------------------------------- training
def tiny_setup():
    from open_instruct.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    return build_tiny_model("llama", tokenizer=tok, num_hidden_layers=8), tok


def training_batches(tokenizer, path: Path | None, seq_len: int, batch_size: int, n: int, quick: bool):
    """``n`` lists of feature dicts, grouped by length the way the Trainer groups them (seeded)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from open_instruct.data import prepare_datasets

    if quick or path is None or not path.is_file():
        import tempfile as tf

        from open_instruct.reformat_datasets import convert_super_ni_data

        out = Path(tf.mkdtemp())
        convert_super_ni_data(REPO / "data/samples/natural-instructions", out, seed=42)
        path = next(out.rglob("super_ni_data.jsonl"))
    ds, _, _ = prepare_datasets(path, tokenizer, seq_len, do_eval=False, chat_format="tokenizer",
                                add_length_column=True)
    gen = torch.Generator().manual_seed(0)
    order = list(LengthGroupedSampler(batch_size, lengths=ds["length"], generator=gen))
    batches = []
    for start in range(0, len(order) - batch_size + 1, batch_size):
        batches.append([{k: ds[int(i)][k] for k in ("input_ids", "labels", "attention_mask")}
                        for i in order[start:start + batch_size]])
        if len(batches) == n:
            break
    return batches, path


def mos_adapter(base):
    import peft

    from open_instruct.mos import MoSConfig

    cfg = MoSConfig(r=8, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=4, lora_alpha=16,
                    lora_dropout=0.0, target_modules="all-linear", seed=0)
    return peft.get_peft_model(base, cfg)


def matmul_ratio(repeats: int = 5) -> tuple[float, float]:
    """Milliseconds of one SmolLM2-sized matmul (640 x 576 by 576 x 1536) in float32 and in bfloat16."""
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(640, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
        a @ b
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        out.append((time.perf_counter() - t0) / repeats * 1e3)
    return out[0], out[1]


def bench_train(args) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from open_instruct.data.collate import build_collator
    from open_instruct.model_loading import cpu_native_bf16

    if args.quick or not MODEL.is_dir():
        base, tok = tiny_setup()
        model_name = "tiny random Llama (8 layers)"
    else:
        base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(MODEL)
        model_name = "SmolLM2-135M-Instruct"
    base.config.use_cache = False
    fp32_ms, bf16_ms = matmul_ratio()
    names = list(VARIANTS)
    print(f"one SmolLM2-sized matmul: float32 {fp32_ms:.1f} ms, bfloat16 {bf16_ms:.1f} ms ({fp32_ms / bf16_ms:.2f}x); "
          f"native bf16 on this CPU: {cpu_native_bf16()}")
    if not cpu_native_bf16() and not args.bf16:
        names = names[:3]
        print("no native bf16 here: the bf16 training variants are left out (--bf16 runs them anyway: very slow)")
    rows = []
    for seq_len in args.seq_len:
        batches, path = training_batches(tok, TRAIN_FILES.get(seq_len), seq_len, args.batch_size,
                                         args.steps + args.warmup, args.quick)
        variants = {}
        for name in names:
            torch.manual_seed(0)
            model = mos_adapter(copy.deepcopy(base)).train()
            if name == VARIANTS[4]:  # frozen base weights in bf16; the trainable adapter stays float32
                for p in model.parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(torch.bfloat16)
            collator = build_collator(tok, model, padding_free=name.startswith("padding-free"),
                                      supervised_logits=name != VARIANTS[0])
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
            variants[name] = dict(model=model, collator=collator, opt=opt, bf16=name.startswith("bf16"),
                                  times=[], losses=[], tokens=0)
        for step, feats in enumerate(batches):
            order = names if step % 2 == 0 else names[::-1]
            real = sum(len(f["input_ids"]) for f in feats)
            for name in order:
                v = variants[name]
                inputs = v["collator"](feats)
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v["bf16"]):
                    loss = v["model"](**inputs).loss
                loss.backward()
                v["opt"].step()
                v["opt"].zero_grad(set_to_none=True)
                dt = time.perf_counter() - t0
                v["losses"].append(loss.item())
                if step >= args.warmup:
                    v["times"].append(dt)
                    v["tokens"] += real
        today = None
        for name in names:
            v = variants[name]
            med = statistics.median(v["times"])
            tokens_per_step = v["tokens"] / len(v["times"])
            tail = v["losses"][len(v["losses"]) // 2:]
            row = dict(part="train", seq_len=seq_len, variant=name, model=model_name, data=str(path.relative_to(REPO))
                       if path.is_relative_to(REPO) else path.name, step_s=med, tokens_per_s=tokens_per_step / med,
                       loss=statistics.mean(tail), steps=len(v["losses"]))
            today = today or row
            row["speedup"] = row["tokens_per_s"] / today["tokens_per_s"]
            row["loss_delta"] = row["loss"] - today["loss"]
            rows.append(row)
        print_table([r for r in rows if r["seq_len"] == seq_len],
                    f"training, batch {args.batch_size} x {seq_len} ({model_name}, {rows[-1]['data']}, "
                    f"{args.steps} timed steps, threads {torch.get_num_threads()})",
                    [("variant", "{}"), ("step_s", "{:.2f}"), ("tokens_per_s", "{:.0f}"), ("speedup", "{:.2f}x"),
                     (f"loss@{args.steps + args.warmup}", None), ("loss_delta", "{:+.2e}")])
    return rows


# ---------------------------------------------------------------------------------------------------- MMLU
LM_EVAL_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: {description}
doc_to_text: "{{{{question}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
target_delimiter: " "
fewshot_delimiter: "\\n\\n"
metric_list:
  - metric: acc
"""


def mmlu_subset(args):
    from eval.mmlu.run_eval import list_subjects, read_split

    data = Path(args.mmlu_dir)
    subjects = list_subjects(data)[: args.subjects]
    out = {}
    for subject in subjects:
        test = read_split(data, "test", subject)
        if args.per_subject < len(test):
            test = test.sample(args.per_subject, random_state=42)
        out[subject] = (read_split(data, "dev", subject)[: args.shots], test)
    return out


def run_ours(model, tokenizer, splits, args, shared: bool) -> tuple[float, list[int], list[bool]]:
    from eval.mmlu.run_eval import eval_subject

    preds, correct = [], []
    t0 = time.perf_counter()
    for subject, (dev, test) in splits.items():
        ok, probs = eval_subject(model, tokenizer, subject, dev, test, args.shots, None, args.batch_size,
                                 shared_prefix=shared)
        preds += probs.argmax(1).tolist()
        correct += ok.tolist()
    return time.perf_counter() - t0, preds, correct


def run_lm_eval(splits, args, tokenizer) -> tuple[float, list[int], list[bool]] | None:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        print("lm-eval is not installed: its column is left out (pip install -r requirements-dev.txt)")
        return None
    from eval.mmlu.run_eval import CHOICES, format_subject

    tmp = Path(tempfile.mkdtemp(prefix="lm_eval_tasks_"))
    names = []
    for subject, (dev, test) in splits.items():
        for split, df in (("dev", dev), ("test", test)):
            with open(tmp / f"{subject}_{split}.jsonl", "w", encoding="utf-8") as fout:
                for row in df.itertuples(index=False):
                    fout.write(json.dumps({"question": str(row[0]), "choices": [str(x) for x in row[1:5]],
                                           "answer": CHOICES.index(str(row[5]).strip())}) + "\n")
        name = f"mos_bench_mmlu_{subject}"
        description = json.dumps(f"The following are multiple choice questions (with answers) about "
                                 f"{format_subject(subject)}.\n\n")
        (tmp / f"{name}.yaml").write_text(LM_EVAL_TASK.format(name=name, test=tmp / f"{subject}_test.jsonl",
                                                              dev=tmp / f"{subject}_dev.jsonl",
                                                              description=description))
        names.append(name)
    manager = TaskManager(include_path=str(tmp))
    t0 = time.perf_counter()
    results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={MODEL},dtype=float32",
                                      tasks=names, num_fewshot=args.shots, batch_size=args.batch_size,
                                      device="cpu", task_manager=manager, log_samples=True)
    seconds = time.perf_counter() - t0
    preds, correct = [], []
    for name in names:
        for sample in sorted(results["samples"][name], key=lambda s: s["doc_id"]):
            scores = [r[0] for r in sample["filtered_resps"]]
            pred = max(range(len(scores)), key=scores.__getitem__)
            preds.append(pred)
            correct.append(pred == sample["target"])
    return seconds, preds, correct


def bench_mmlu(args) -> list[dict]:
    from eval.utils import load_hf_lm_and_tokenizer
    from open_instruct.model_loading import cpu_native_bf16

    splits = mmlu_subset(args)
    n = sum(len(t) for _, t in splits.values())
    model, tokenizer = load_hf_lm_and_tokenizer(str(MODEL), dtype=torch.float32, device_map=None)
    runs = {}
    runs["this evaluator, no prefix cache (today)"] = run_ours(model, tokenizer, splits, args, shared=False)
    runs["this evaluator, shared-prefix cache"] = run_ours(model, tokenizer, splits, args, shared=True)
    del model
    if cpu_native_bf16() or args.bf16:
        model, _ = load_hf_lm_and_tokenizer(str(MODEL), dtype=torch.bfloat16, device_map=None)
        runs["this evaluator, shared-prefix cache, --torch_dtype bfloat16"] = run_ours(model, tokenizer, splits, args,
                                                                                       shared=True)
        del model
    if not args.no_lm_eval:
        lm = run_lm_eval(splits, args, tokenizer)
        if lm is not None:
            runs["lm-eval hf (same prompts)"] = lm
    ref = runs["this evaluator, no prefix cache (today)"]
    rows = []
    for name, (seconds, preds, correct) in runs.items():
        rows.append(dict(part="mmlu", variant=name, questions=n, s_per_question=seconds / n,
                         accuracy=sum(correct) / n, agree=sum(a == b for a, b in zip(preds, ref[1])) / n))
    lm_time = runs.get("lm-eval hf (same prompts)", (None,))[0]
    for row in rows:
        row["time_vs_lm_eval"] = row["s_per_question"] * n / lm_time if lm_time else None
    print_table(rows, f"real MMLU {args.shots}-shot, {len(splits)} subjects x {args.per_subject} questions ({n}), "
                      f"batch {args.batch_size}, float32 unless named, threads {torch.get_num_threads()}",
                [("variant", "{}"), ("s_per_question", "{:.3f}"), ("accuracy", "{:.3f}"), ("agree", "{:.3f}"),
                 ("time_vs_lm_eval", "{:.2f}x")])
    return rows


# ---------------------------------------------------------------------------------------------------- output
def print_table(rows: list[dict], title: str, columns: list[tuple[str, str | None]]) -> None:
    print(f"\n{title}\n")
    keys = [c.split("@")[0] if c.startswith("loss@") else c for c, _ in columns]
    print("| " + " | ".join(c for c, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for (_col, fmt), key in zip(columns, keys):
            value = row.get(key)
            cells.append("" if value is None else (f"{value:.4f}" if fmt is None else fmt.format(value)))
        print("| " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("part", choices=("train", "mmlu", "all"))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared 2-core machine)")
    ap.add_argument("--seq-len", type=int, nargs="+", default=[160, 512], help="training sequence lengths")
    ap.add_argument("--batch-size", type=int, default=4, help="training batch / MMLU prompts per forward")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps per variant first")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--mmlu-dir", default=str(REPO / "data/eval/mmlu"), help="real MMLU (prepare_eval_data.sh)")
    ap.add_argument("--subjects", type=int, default=5, help="the first N MMLU subjects")
    ap.add_argument("--per-subject", type=int, default=20, help="test questions per subject")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--no-lm-eval", action="store_true", help="skip the lm-eval column")
    ap.add_argument("--bf16", action="store_true", help="time the bf16 variant even without native bf16")
    ap.add_argument("--quick", action="store_true", help="tiny random model and the sample data (smoke run)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.seq_len, args.steps, args.warmup = [64], 2, 1
    rows = []
    if args.part in ("train", "all"):
        rows += bench_train(args)
    if args.part in ("mmlu", "all"):
        if args.quick or not MODEL.is_dir():
            print("mmlu: needs SmolLM2 (python -m open_instruct.models fetch-smollm2) and real MMLU; skipped")
        else:
            rows += bench_mmlu(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
