"""Score one trained run (or the base model) on everything the replication table reports.

- ``seen_loss``:   token-weighted loss on unseen instances of the training tasks (held-in tasks)
- ``unseen_loss``: the same on whole task families held out of training
- ``mmlu_cloze``:  real MMLU, log-likelihood of each answer's text (a fixed subset of every subject)
- ``arc_easy``:    ARC-Easy test, the same cloze scoring, length-normalised (``acc_per_char``)
- ``mmlu_letter``: real MMLU 0-shot in the original letter format (the paper's benchmark; chance at 135M)

The model is loaded once, with the adapter (the run directory's exported plain LoRA adapter) attached with PEFT
without merging, and every evaluator scores it in-process. Everything is seeded subsets, so a rerun gives the same
numbers.
"""

from __future__ import annotations

import random
from pathlib import Path

from eval.cli import read_jsonl_file
from replication.grid import Setting


def seen_subset(rows: list[dict], per_task: int) -> list[dict]:
    """The first ``per_task`` held-out instances of each task (the file is already shuffled per task)."""
    taken: dict[str, int] = {}
    out = []
    for row in rows:
        if taken.get(row["task"], 0) < per_task:
            taken[row["task"]] = taken.get(row["task"], 0) + 1
            out.append(row)
    return out


def fixed_subset(rows: list[dict], n: int) -> list[dict]:
    if n >= len(rows):
        return rows
    keep = sorted(random.Random(42).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def score_run(model_path: str, adapter_path: str | None, data: dict[str, Path], setting: Setting,
              chat_format: str = "tokenizer") -> dict:
    """All metrics of one run as a flat dict (see the module doc). ``data``: heldout_dir, mmlu_dir, arc_file."""
    from eval.cloze.run_eval import evaluate_cloze
    from eval.loglik import example_losses, mean_loss, text_losses
    from eval.mmlu.run_eval import evaluate_mmlu
    from eval.utils import load_hf_lm_and_tokenizer

    # on the GPU when there is one (the evaluators' own default), else on the CPU
    model, tokenizer = load_hf_lm_and_tokenizer(model_path, adapter_path=adapter_path, padding_side="right")
    out: dict[str, float | int] = {}
    if setting.scoring == "loss":  # a pilot: the held-out loss only
        rows = read_jsonl_file(data["heldout_dir"] / "heldout.jsonl")
        if setting.data == "german":
            losses = text_losses(model, tokenizer, [r["text"] for r in rows], setting.max_seq_length,
                                 batch_size=setting.eval_batch_size, desc="held-out documents")
        else:
            losses = example_losses(model, tokenizer, rows, setting.max_seq_length, chat_format,
                                    batch_size=setting.eval_batch_size, desc="held-out problems")
        return {"seen_loss": mean_loss(losses), "seen_loss_n": len(rows)}
    seen = seen_subset(read_jsonl_file(data["heldout_dir"] / "seen_tasks.jsonl"), setting.seen_per_task)
    unseen = fixed_subset(read_jsonl_file(data["heldout_dir"] / "unseen_tasks.jsonl"), setting.unseen_max)
    for name, rows in (("seen_loss", seen), ("unseen_loss", unseen)):
        losses = example_losses(model, tokenizer, rows, setting.max_seq_length, chat_format,
                                batch_size=setting.eval_batch_size, desc=name)
        out[name] = mean_loss(losses)
        out[f"{name}_n"] = len(rows)
    metrics = evaluate_cloze(model, tokenizer, "mmlu", data["mmlu_dir"], n_instances=setting.mmlu_per_subject,
                             batch_size=setting.eval_batch_size)
    out.update(mmlu_cloze=metrics["acc"], mmlu_cloze_per_char=metrics["acc_per_char"], mmlu_n=metrics["n"])
    metrics = evaluate_cloze(model, tokenizer, "arc_easy", data["arc_file"], n_instances=setting.arc_easy_n,
                             batch_size=setting.eval_batch_size)
    out.update(arc_easy=metrics["acc_per_char"], arc_easy_sum=metrics["acc"], arc_easy_n=metrics["n"])
    tokenizer.padding_side = "left"  # the letter format reads the next token at the end of left-padded prompts
    out["mmlu_letter"] = evaluate_mmlu(model, tokenizer, data["mmlu_dir"], ntrain=0,
                                       n_instances=setting.mmlu_per_subject, chat_format=chat_format,
                                       batch_size=setting.eval_batch_size)["average_acc"]
    return out
