"""prepare_datasets: held-out split (size, disjointness, seed), dropped examples, length column, collator."""

import json

import pytest
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq

from open_instruct.data import IGNORE_INDEX, encode_with_messages_format, prepare_datasets

N = 40


def chat(i):
    return {"dataset": "demo", "id": f"demo_{i}",
            "messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                         {"role": "assistant", "content": f"{i + 1}"}]}


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(chat(i)) + "\n" for i in range(N)))
    return path


def as_tuples(ds):
    return [tuple(x) for x in ds["input_ids"]]


def test_eval_split_size_disjoint_and_seeded(train_file, tiny_tokenizer):
    train, evals, stats = prepare_datasets(train_file, tiny_tokenizer, 128, max_eval_samples=8, seed=42)
    assert len(train) == N - 8 and len(evals) == 8
    assert stats["num_train"] == N - 8 and stats["num_eval"] == 8 and stats["num_examples"] == N
    assert set(as_tuples(train)).isdisjoint(as_tuples(evals))
    assert len(set(as_tuples(train)) | set(as_tuples(evals))) == N
    assert train.column_names == ["input_ids", "labels", "attention_mask"]

    again_train, again_eval, _ = prepare_datasets(train_file, tiny_tokenizer, 128, max_eval_samples=8, seed=42)
    assert as_tuples(again_eval) == as_tuples(evals) and as_tuples(again_train) == as_tuples(train)
    _, other_eval, _ = prepare_datasets(train_file, tiny_tokenizer, 128, max_eval_samples=8, seed=7)
    assert as_tuples(other_eval) != as_tuples(evals)

    # Same split as the original: train_test_split(test_size=k, shuffle=True, seed) of the encoded records.
    order = Dataset.from_dict({"i": list(range(N))}).train_test_split(test_size=8, shuffle=True, seed=42)
    expected_eval = [tuple(encode_with_messages_format(chat(i), tiny_tokenizer, 128)["input_ids"])
                     for i in order["test"]["i"]]
    assert as_tuples(evals) == expected_eval


def test_no_eval_and_max_train_samples(train_file, tiny_tokenizer):
    train, evals, stats = prepare_datasets(train_file, tiny_tokenizer, 128, do_eval=False, max_train_samples=5)
    assert evals is None and len(train) == 5 and stats["num_eval"] == 0
    assert as_tuples(train) == [tuple(encode_with_messages_format(chat(i), tiny_tokenizer, 128)["input_ids"])
                                for i in range(5)]


def test_examples_without_trainable_tokens_are_dropped_and_counted(tmp_path, tiny_tokenizer):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 10
    records = [chat(i) for i in range(10)]
    records += [{"prompt": long_prompt, "completion": "x"} for _ in range(3)]   # reply cut by truncation
    records += [{"messages": [{"role": "user", "content": "no reply"}]}]        # nothing to learn at all
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    train, evals, stats = prepare_datasets(path, tiny_tokenizer, 48, max_eval_samples=2, seed=0)
    assert stats["num_dropped_no_trainable_tokens"] == 4
    assert stats["num_messages_format"] == 11 and stats["num_prompt_completion_format"] == 3
    assert stats["num_at_max_seq_length"] == 3
    assert len(train) + len(evals) == 10
    for row in list(train) + list(evals):
        assert any(label != IGNORE_INDEX for label in row["labels"])
    assert stats["num_train_trainable_tokens"] == sum(
        sum(label != IGNORE_INDEX for label in row["labels"]) for row in train)


def test_length_column_and_collator(train_file, tiny_tokenizer):
    train, _, _ = prepare_datasets(train_file, tiny_tokenizer, 128, do_eval=False, add_length_column=True)
    assert train["length"] == [len(ids) for ids in train["input_ids"]]
    rows = [train[0], train[N - 1]]
    assert len(rows[0]["input_ids"]) != len(rows[1]["input_ids"])
    batch = DataCollatorForSeq2Seq(tiny_tokenizer)([{k: r[k] for k in ("input_ids", "labels", "attention_mask")}
                                                    for r in rows])
    width = max(len(r["input_ids"]) for r in rows)
    assert tuple(batch["input_ids"].shape) == (2, width) and tuple(batch["labels"].shape) == (2, width)
    short = min(range(2), key=lambda j: len(rows[j]["input_ids"]))
    n = len(rows[short]["input_ids"])
    assert batch["labels"][short, n:].tolist() == [IGNORE_INDEX] * (width - n)
    assert batch["input_ids"][short, n:].tolist() == [tiny_tokenizer.pad_token_id] * (width - n)
    assert batch["attention_mask"][short, n:].tolist() == [0] * (width - n)


def test_chat_format_tokenizer_and_num_proc(train_file, tiny_tokenizer):
    train, evals, _ = prepare_datasets(train_file, tiny_tokenizer, 128, max_eval_samples=4, chat_format="tokenizer",
                                       num_proc=2)
    row = train[0]
    assert row["input_ids"][0] == tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")
    trained = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE_INDEX]
    assert tiny_tokenizer.decode(trained).endswith("<|im_end|>")


def test_argument_errors(train_file, tiny_tokenizer):
    with pytest.raises(ValueError, match="max_eval_samples"):
        prepare_datasets(train_file, tiny_tokenizer, 128)  # do_eval defaults to True
    with pytest.raises(ValueError, match=f"max_eval_samples={N} but only {N} usable"):
        prepare_datasets(train_file, tiny_tokenizer, 128, max_eval_samples=N)
    with pytest.raises(ValueError, match="max_seq_length"):
        prepare_datasets(train_file, tiny_tokenizer, 0, do_eval=False)
    with pytest.raises(ValueError, match="chat_format"):
        prepare_datasets(train_file, tiny_tokenizer, 128, do_eval=False, chat_format="vicuna")
