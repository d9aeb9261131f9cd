"""The replication's scoring loads the model once and scores it in-process: its numbers equal those of the
evaluators' command lines (each loading base model + adapter itself), and it writes no file."""

import json
from dataclasses import replace
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from eval.cloze.run_eval import main as cloze_main
from eval.mmlu.run_eval import main as mmlu_main
from replication.grid import SETTINGS
from replication.score import score_run

MMLU = Path(__file__).resolve().parents[2] / "data" / "samples" / "mmlu"


def lora_adapter(tiny_checkpoint, out: Path) -> Path:
    """A plain LoRA adapter with random non-zero lora_B (so it changes every score)."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_checkpoint),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_run_equals_the_command_lines(tiny_checkpoint, tmp_path):
    inputs = tmp_path / "inputs"
    (inputs / "heldout").mkdir(parents=True)
    adapter = lora_adapter(tiny_checkpoint, inputs / "adapter")
    chat = [{"task": f"task{i % 2}", "messages": [{"role": "user", "content": f"Say {i}."},
                                                    {"role": "assistant", "content": f"{i} it is."}]}
            for i in range(4)]
    write_jsonl(inputs / "heldout" / "seen_tasks.jsonl", chat)
    write_jsonl(inputs / "heldout" / "unseen_tasks.jsonl", chat)
    arc = write_jsonl(inputs / "arc.jsonl", [{"id": i, "question": f"Which is a colour ({i})?",
                                              "choices": ["blue", "dog", "a table"], "gold": i % 3} for i in range(5)])
    setting = replace(SETTINGS["tiny"], mmlu_per_subject=2, arc_easy_n=4, eval_batch_size=4)
    before = sorted(tmp_path.rglob("*"))
    got = score_run(str(tiny_checkpoint), str(adapter), {"heldout_dir": inputs / "heldout", "mmlu_dir": MMLU,
                                                         "arc_file": arc}, setting)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing deleted

    model = ["--model_name_or_path", str(tiny_checkpoint), "--adapter_path", str(adapter), "--eval_batch_size", "4"]
    letter = mmlu_main(["--ntrain", "0", "--data_dir", str(MMLU), "--n_instances", "2", "--use_chat_format",
                        "--chat_formatting_function", "tokenizer", "--save_dir", str(tmp_path / "letter"), *model])
    cloze = cloze_main(["--task", "mmlu", "--data_dir", str(MMLU), "--n_instances", "2",
                        "--save_dir", str(tmp_path / "cloze"), *model])
    arc_easy = cloze_main(["--task", "arc_easy", "--data_file", str(arc), "--n_instances", "4",
                           "--save_dir", str(tmp_path / "arc"), *model])
    assert got["mmlu_letter"] == letter["average_acc"]
    assert (got["mmlu_cloze"], got["mmlu_cloze_per_char"], got["mmlu_n"]) == (
        cloze["acc"], cloze["acc_per_char"], cloze["n"])
    assert (got["arc_easy"], got["arc_easy_sum"], got["arc_easy_n"]) == (
        arc_easy["acc_per_char"], arc_easy["acc"], arc_easy["n"])
    assert (got["seen_loss_n"], got["unseen_loss_n"]) == (2, 4)  # one row of each of the 2 tasks; all 4
    assert got["seen_loss"] > 0 and got["unseen_loss"] > 0
