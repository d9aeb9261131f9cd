"""Score one trained run (or the base model) on everything the replication table reports.

- ``seen_loss``:   token-weighted loss on unseen instances of the training tasks (held-in tasks)
- ``unseen_loss``: the same on whole task families held out of training
- ``mmlu_cloze``:  real MMLU, log-likelihood of each answer's text (a fixed subset of every subject)
- ``arc_easy``:    ARC-Easy test, the same cloze scoring, length-normalised (``acc_per_char``)
- ``mmlu_letter``: real MMLU 0-shot in the original letter format (the paper's benchmark; chance at 135M)

The base model is loaded once; the adapter (the run directory's exported plain LoRA adapter) is attached
with PEFT without merging. Everything is seeded subsets, so a rerun gives the same numbers.
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
    from eval.cloze.run_eval import arc_questions, mmlu_questions, score
    from eval.loglik import example_losses, mean_loss
    from eval.mmlu.run_eval import main as mmlu_letter_main
    from eval.utils import load_hf_lm_and_tokenizer

    model, tokenizer = load_hf_lm_and_tokenizer(model_path, adapter_path=adapter_path, padding_side="right",
                                                device_map=None)
    out: dict[str, float | int] = {}
    if setting.scoring == "loss":  # a pilot: the held-out loss only
        rows = read_jsonl_file(data["heldout_dir"] / "heldout.jsonl")
        if setting.data == "german":
            from eval.loglik import text_losses

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
    mmlu = mmlu_questions(data["mmlu_dir"], setting.mmlu_per_subject)
    metrics, _ = score(model, tokenizer, mmlu, setting.eval_batch_size)
    out.update(mmlu_cloze=metrics["acc"], mmlu_cloze_per_char=metrics["acc_per_char"], mmlu_n=metrics["n"])
    arc = arc_questions(data["arc_file"], setting.arc_easy_n)
    metrics, _ = score(model, tokenizer, arc, setting.eval_batch_size)
    out.update(arc_easy=metrics["acc_per_char"], arc_easy_sum=metrics["acc"], arc_easy_n=metrics["n"])
    del model
    letter_dir = data["scratch_dir"] / "mmlu_letter"
    argv = ["--ntrain", "0", "--data_dir", str(data["mmlu_dir"]), "--save_dir", str(letter_dir),
            "--n_instances", str(setting.mmlu_per_subject), "--model_name_or_path", model_path,
            "--eval_batch_size", str(setting.eval_batch_size), "--use_chat_format",
            "--chat_formatting_function", chat_format]
    if adapter_path:
        argv += ["--adapter_path", adapter_path]
    if (letter_dir / "metrics.json").exists():
        (letter_dir / "metrics.json").unlink()  # our own scratch copy from an interrupted scoring
    out["mmlu_letter"] = mmlu_letter_main(argv)["average_acc"]
    return out
