"""Plain-text training (continued pretraining): documents packed into full blocks, loss on every token, held-out
documents never trained on; the trainer and the launcher reach it."""

import json

import pytest

from open_instruct import finetune_trainer
from open_instruct.data.loading import load_jsonl_examples
from open_instruct.data.text import document_tokens, is_text_file, pack_blocks, prepare_text_datasets
from open_instruct.tiny import save_tiny_checkpoint

WORDS = ["Helsinki", "Paris", "fox", "dog", "answer", "numbers", "capital", "question", "symbols", "quick"]


def write_docs(path, n=40):
    docs = [f"doc{i:02d} " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 7)) for i in range(n)]
    path.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return docs


def test_pack_blocks_cuts_full_blocks_and_drops_the_tail():
    blocks, dropped = pack_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4)
    assert blocks == [[1, 2, 3, 4], [5, 6, 7, 8]] and dropped == 1
    assert pack_blocks([[1, 2]], 4) == ([], 2)


def test_documents_end_in_one_eos(tiny_tokenizer):
    docs = document_tokens(["hello there", "fox"], tiny_tokenizer)
    assert all(d[-1] == tiny_tokenizer.eos_token_id and d.count(tiny_tokenizer.eos_token_id) == 1 for d in docs)


def test_blocks_train_on_every_token_and_hold_out_whole_documents(tiny_tokenizer, tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = write_docs(path)
    train, held, stats = prepare_text_datasets(path, tiny_tokenizer, 16, max_eval_samples=5, seed=0)
    assert all(len(ids) == 16 for ids in train["input_ids"]) and train["labels"] == train["input_ids"]
    assert stats["num_heldout_documents"] == 5 and stats["num_train"] == len(train)
    assert stats["num_train_trainable_tokens"] == len(train) * 15
    trained = tiny_tokenizer.decode([t for b in train["input_ids"] for t in b])
    held_text = tiny_tokenizer.decode([t for b in held["input_ids"] for t in b])
    held_ids = {d.split()[0] for d in docs if d.split()[0] in held_text}
    assert len(held_ids) >= 4  # (the last held-out block may cut the last document short)
    assert not any(doc_id in trained for doc_id in held_ids)
    kept = [d.split()[0] for d in docs if d.split()[0] not in held_ids]
    assert sum(doc_id in trained for doc_id in kept) >= len(kept) - 2  # all but the dropped tail are trained on
    again = prepare_text_datasets(path, tiny_tokenizer, 16, max_eval_samples=5, seed=0)[0]
    assert again["input_ids"] == train["input_ids"]  # deterministic


def test_format_mixups_name_the_fix(tiny_tokenizer, tmp_path):
    text = tmp_path / "docs.jsonl"
    write_docs(text, 3)
    with pytest.raises(ValueError, match="train_format text"):
        load_jsonl_examples(text)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(ValueError, match="--train_format instruction"):
        prepare_text_datasets(chat, tiny_tokenizer, 16, do_eval=False)
    assert is_text_file(text) and not is_text_file(chat)
    with pytest.raises(ValueError, match="fewer than one block"):
        prepare_text_datasets(text, tiny_tokenizer, 4096, do_eval=False)


def test_trainer_runs_continued_pretraining_on_a_text_file(tmp_path):
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "docs.jsonl"
    write_docs(data, 60)
    out = tmp_path / "run"
    args = ["--model_name_or_path", str(model), "--train_file", str(data), "--output_dir", str(out),
            "--ft_mode", "mos", "--lora_r", "3", "--valid_param_lora_r", "2", "--valid_param_private_r", "1",
            "--num_chunk_per_vec", "2", "--torch_dtype", "float32", "--use_cpu", "True", "--max_steps", "3",
            "--per_device_train_batch_size", "2", "--max_seq_length", "32", "--report_to", "none",
            "--do_eval", "True", "--max_eval_samples", "4", "--eval_strategy", "no", "--group_by_length", "True"]
    assert finetune_trainer.main(args) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["text_mode"] is True and results["precision"] == "float32"
    assert results["supervised_tokens_seen"] == 3 * 2 * 31  # steps x batch x (block - 1) targets
    assert results["eval_loss"] > 0 and (out / "completed").exists()
