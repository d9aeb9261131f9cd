"""MMLU evaluator: prompt format, shot dropping, scoring against unbatched logits, metric aggregation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.mmlu import run_eval as mmlu
from eval.templates import create_prompt_with_tokenizer_chat_template, create_prompt_with_tulu_chat_format

PHYSICS_DEV = [["What is 1+1?", "1", "2", "3", "4", "B"],
               ["Color of the sky?", "red", "blue", "green", "black", "B"]]
PHYSICS_TEST = [["What is 2+2?", "4", "5", "6", "7"],
                ["Which is a fruit?", "car", "apple", "rock", "sand"],
                ["Pick the third letter.", "a", "b", "c", "d"]]
SAMPLES_DEV = [["Is water wet?", "yes", "no", "maybe", "never", "A"]]
SAMPLES_TEST = [["The quick brown fox?", "jumps", "sleeps", "runs", "eats"],
                ["Capital of France?", "Rome", "Paris", "Oslo", "Bern"]]


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False)


def expected_prompt(subject_words, shots, row):
    """The original format written out independently of the module under test."""
    text = f"The following are multiple choice questions (with answers) about  {subject_words}.\n\n"
    for q, a, b, c, d, ans in shots:
        text += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}\n\n"
    q, a, b, c, d = row[:5]
    return text + f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def unbatched_probs(model, tokenizer, prompt):
    """Softmax over the vocabulary of the last-position logits, one prompt at a time, at ' A'..' D'."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    probs = torch.softmax(logits.double(), dim=-1)
    letter_ids = [tokenizer.encode(" " + x, add_special_tokens=False)[-1] for x in "ABCD"]
    return probs[letter_ids].numpy()


def test_prompt_matches_original_format_character_for_character(tiny_tokenizer):
    dev = pd.DataFrame(PHYSICS_DEV)
    test = pd.DataFrame([PHYSICS_TEST[0] + ["A"]])
    prompt = mmlu.build_prompt(dev, test, 0, "high_school_physics", 1, tiny_tokenizer)
    assert prompt == (
        "The following are multiple choice questions (with answers) about  high school physics.\n\n"
        "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 2+2?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:")
    tulu = mmlu.build_prompt(dev, test, 0, "high_school_physics", 0, tiny_tokenizer,
                             chat_fn=create_prompt_with_tulu_chat_format)
    assert tulu == (
        "<|user|>\nThe following are multiple choice questions (with answers) about  high school physics.\n\n"
        "What is 2+2?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:\n<|assistant|>\nThe answer is:")
    chatml = mmlu.build_prompt(dev, test, 0, "high_school_physics", 0, tiny_tokenizer,
                               chat_fn=create_prompt_with_tokenizer_chat_template)
    assert chatml == (
        "<|im_start|>user\nThe following are multiple choice questions (with answers) about  high school physics."
        "\n\nWhat is 2+2?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:<|im_end|>\n<|im_start|>assistant\nThe answer is:")


def test_shots_are_dropped_while_the_prompt_is_too_long(tiny_tokenizer):
    dev = pd.DataFrame(PHYSICS_DEV)
    test = pd.DataFrame([PHYSICS_TEST[1] + ["B"]])
    full = [expected_prompt("high school physics", PHYSICS_DEV[:k], PHYSICS_TEST[1]) for k in (0, 1, 2)]
    lengths = [len(tiny_tokenizer(p, add_special_tokens=False).input_ids) for p in full]
    assert lengths[0] < lengths[1] < lengths[2]
    assert mmlu.build_prompt(dev, test, 0, "high_school_physics", 2, tiny_tokenizer) == full[2]
    for limit, expected in [(lengths[2], full[2]), (lengths[2] - 1, full[1]), (lengths[1], full[1]),
                            (lengths[1] - 1, full[0]), (lengths[0], full[0])]:
        got = mmlu.build_prompt(dev, test, 0, "high_school_physics", 2, tiny_tokenizer, max_prompt_tokens=limit)
        assert got == expected, limit
    with pytest.warns(UserWarning, match="even without dev examples"):
        got = mmlu.build_prompt(dev, test, 0, "high_school_physics", 2, tiny_tokenizer,
                                max_prompt_tokens=lengths[0] - 1)
    assert got == full[0]


def test_aggregate_pools_questions_by_hand():
    metrics = mmlu.aggregate({
        "high_school_physics": np.array([True, False, True]),
        "astronomy": np.array([True]),            # also "physics" -> pooled with high_school_physics
        "philosophy": np.array([False, False]),   # humanities
        "samples": np.array([True, True]),        # not in the maps: only in average_acc
    })
    assert metrics["average_acc"] == pytest.approx(5 / 8)
    assert metrics["subcat_acc"] == pytest.approx({"physics": 3 / 4, "philosophy": 0.0})
    assert metrics["cat_acc"] == pytest.approx({"STEM": 3 / 4, "humanities": 0.0})


def test_end_to_end_matches_unbatched_logits(tmp_path, tiny_checkpoint):
    data = tmp_path / "mmlu"
    write_csv(data / "dev" / "high_school_physics_dev.csv", PHYSICS_DEV)
    write_csv(data / "dev" / "samples_dev.csv", SAMPLES_DEV)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)

    # Predict every row independently first, then choose the gold answers so that the accuracies are known:
    # physics 2 of 3 correct, samples 1 of 2 -> average 3/5, STEM = physics = 2/3.
    subjects = {"high_school_physics": ("high school physics", PHYSICS_DEV[:1], PHYSICS_TEST, [True, True, False]),
                "samples": ("samples", SAMPLES_DEV[:1], SAMPLES_TEST, [False, True])}
    expected = {}
    for subject, (words, shots, rows, make_correct) in subjects.items():
        probs = np.stack([unbatched_probs(model, tokenizer, expected_prompt(words, shots, r)) for r in rows])
        preds = ["ABCD"[i] for i in probs.argmax(1)]
        answers = [p if ok else "ABCD"[("ABCD".index(p) + 1) % 4] for p, ok in zip(preds, make_correct)]
        write_csv(data / "test" / f"{subject}_test.csv", [r + [a] for r, a in zip(rows, answers)])
        expected[subject] = (probs, make_correct)

    save = tmp_path / "out"
    metrics = mmlu.main(["--ntrain", "1", "--data_dir", str(data), "--save_dir", str(save),
                         "--model_name_or_path", str(tiny_checkpoint), "--eval_batch_size", "2"])
    for subject, (probs, make_correct) in expected.items():
        df = pd.read_csv(save / f"{subject}.csv")
        assert list(df.columns) == ["0", "1", "2", "3", "4", "5", "correct",
                                    "choiceA_probs", "choiceB_probs", "choiceC_probs", "choiceD_probs"]
        got = df[["choiceA_probs", "choiceB_probs", "choiceC_probs", "choiceD_probs"]].to_numpy()
        np.testing.assert_allclose(got, probs, atol=1e-5, rtol=0)
        assert df["correct"].tolist() == make_correct
    on_disk = json.loads((save / "metrics.json").read_text())
    assert on_disk == metrics
    assert set(on_disk) == {"average_acc", "subcat_acc", "cat_acc"}
    assert on_disk["average_acc"] == pytest.approx(3 / 5)
    assert on_disk["subcat_acc"] == pytest.approx({"physics": 2 / 3})
    assert on_disk["cat_acc"] == pytest.approx({"STEM": 2 / 3})


def test_missing_data_dir_names_the_expected_files(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="prepare_eval_data.sh"):
        mmlu.main(["--data_dir", str(tmp_path / "nowhere"), "--save_dir", str(tmp_path / "out"),
                   "--model_name_or_path", str(tiny_checkpoint)])
    write_csv(tmp_path / "d" / "test" / "anatomy_test.csv", [PHYSICS_TEST[0] + ["A"]])
    with pytest.raises(ValueError, match="nutrition"):
        mmlu.main(["--data_dir", str(tmp_path / "d"), "--save_dir", str(tmp_path / "out"), "--subjects",
                   "nutrition", "--model_name_or_path", str(tiny_checkpoint)])
