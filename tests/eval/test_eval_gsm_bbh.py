"""GSM8K and BBH evaluators: prompts written out by hand, answer extraction, metrics, tiny-model runs."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.bbh import run_eval as bbh
from eval.gsm import run_eval as gsm
from eval.templates import create_prompt_with_tulu_chat_format

EXEMPLARS = [{"question": "Ann has 2 pens and gets 3 more. How many?", "cot_answer": "2 + 3 = 5. The answer is 5.",
              "short_answer": "5"},
             {"question": "Bob had 10 cents and spent 4.", "cot_answer": "10 - 4 = 6. The answer is 6.",
              "short_answer": "6"}]
GSM_TEST = [{"question": "Tom has 3 apples and buys 1,200 more. How many?",
             "answer": "He has 3+1200=<<3+1200=1203>>1,203 apples.\n#### 1,203"},
            {"question": "What is 5 minus 7? ", "answer": "5-7=-2\n#### -2"},
            {"question": "Half of 5?", "answer": "5/2=<<5/2=2.5>>2.5\n#### 2.5"}]


def greedy(model, tokenizer, prompt, max_new_tokens, stop="\n\n"):
    """Independent single-prompt greedy decoding: new text only, cut at the stop string, stripped."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return (text.split(stop)[0] if stop else text).strip()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------------------------- GSM8K

def test_gsm_extraction_and_gold_rationales_score_100():
    assert gsm.extract_prediction("so 1,203 apples, then 7 more: 1,210.") == "1210"
    # the original's pattern attaches a sign only to decimals ("-2" -> "2"); EM drops the "-" anyway
    assert gsm.extract_prediction("It is -2") == "2" and gsm.extract_prediction("x = -.5 or 2.5") == "2.5"
    assert gsm.extract_prediction("x = -0.5") == "-0.5"
    assert gsm.extract_prediction("no digits") == "no digits"
    assert [gsm.gold_answer(ex["answer"]) for ex in GSM_TEST] == ["1203", "-2", "2.5"]
    records, metrics = gsm.score(GSM_TEST, [ex["answer"] for ex in GSM_TEST])
    assert metrics == {"exact_match": 1.0} and all(r["correct"] for r in records)
    _, metrics = gsm.score(GSM_TEST, ["1203", "2", "25"])  # punctuation is ignored, as in HF exact_match
    assert metrics["exact_match"] == pytest.approx(1.0)
    _, metrics = gsm.score(GSM_TEST, ["1203", "3", "2.4"])
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="####"):
        gsm.gold_answer("no final line")


def test_gsm_prompts():
    prefix = gsm.build_prefix(EXEMPLARS, 2, cot=True)
    assert gsm.build_prompt(prefix, " Q? ") == (
        "Answer the following questions.\n\nQuestion: Ann has 2 pens and gets 3 more. How many?\nAnswer: 2 + 3 = 5. "
        "The answer is 5.\n\nQuestion: Bob had 10 cents and spent 4.\nAnswer: 10 - 4 = 6. The answer is 6.\n\n"
        "Question: Q?\nAnswer:")
    short = gsm.build_prefix(EXEMPLARS, 1, cot=False)
    assert gsm.build_prompt(short, "Q?", create_prompt_with_tulu_chat_format) == (
        "<|user|>\nAnswer the following questions.\n\nQuestion: Ann has 2 pens and gets 3 more. How many?\n"
        "Answer: 5\n\nQuestion: Q?\n<|assistant|>\nAnswer:")
    assert gsm.build_prefix(EXEMPLARS, 0, cot=True) == "Answer the following questions.\n\n"


def test_gsm_end_to_end_on_tiny_model(tmp_path, tiny_checkpoint):
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    prefix = gsm.build_prefix(EXEMPLARS, 2, cot=True)
    # make the first question's gold answer whatever the model predicts for it: EM = 1/3 exactly
    predicted = gsm.extract_prediction(greedy(model, tokenizer, gsm.build_prompt(prefix, GSM_TEST[0]["question"]), 6))
    test = [{**GSM_TEST[0], "answer": f"rationale\n#### {predicted}"}, *GSM_TEST[1:]]
    data = tmp_path / "gsm"
    data.mkdir()
    write_jsonl(data / "test.jsonl", test)
    write_jsonl(data / "cot_exemplars.jsonl", EXEMPLARS)
    metrics = gsm.main(["--data_dir", str(data), "--save_dir", str(tmp_path / "out"), "--n_shot", "2",
                        "--model_name_or_path", str(tiny_checkpoint), "--eval_batch_size", "2",
                        "--max_new_tokens", "6"])
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == metrics
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    for ex, rec in zip(test, records):
        assert rec["model_output"] == greedy(model, tokenizer, gsm.build_prompt(prefix, ex["question"]), 6)
    assert records[0]["correct"] and metrics["exact_match"] == pytest.approx(sum(r["correct"] for r in records) / 3)
    assert metrics["exact_match"] >= 1 / 3 - 1e-9


def test_gsm_missing_exemplars_is_one_line_exit_2(tmp_path, tiny_checkpoint, capsys):
    write_jsonl(tmp_path / "test.jsonl", GSM_TEST)
    with pytest.raises(SystemExit) as exc:
        gsm.main(["--data_dir", str(tmp_path), "--model_name_or_path", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "cot_exemplars.jsonl" in err and "prepare_eval_data.sh" in err


# ----------------------------------------------------------------------------------------------- BBH

COT_PROMPT = ("Header line one\n-----\nAnswer questions about shapes.\n\nQ: Is a square round?\nOptions:\n- Yes\n"
              "- No\nA: Let's think step by step.\nA square has corners.\nSo the answer is No.\n\n"
              "Q: Pick the circle.\nOptions:\n(A) ball\n(B) box\nA: Let's think step by step.\nA ball is round. "
              "So the answer is (A).\n")


def test_bbh_prompts_and_extraction(tmp_path):
    (tmp_path / "cot-prompts").mkdir()
    (tmp_path / "cot-prompts" / "shapes.txt").write_text(COT_PROMPT)
    cot = bbh.read_prompt(tmp_path, "shapes", cot=True)
    assert cot == COT_PROMPT.split("-----\n", 1)[1].strip()
    assert bbh.read_prompt(tmp_path, "shapes", cot=False) == (
        "Answer questions about shapes.\n\nQ: Is a square round?\nOptions:\n- Yes\n- No\nA: No\n\n"
        "Q: Pick the circle.\nOptions:\n(A) ball\n(B) box\nA: (A)")
    assert bbh.build_prompt("P", "Is it?") == "P\n\nQ: Is it?\nA:"
    assert bbh.build_prompt("P", "Is it?", create_prompt_with_tulu_chat_format) == \
        "<|user|>\nP\n\nQ: Is it?\n<|assistant|>\nA:"
    assert bbh.extract_answer("Blue first. So the answer is (B). Done.") == "(B)"
    assert bbh.extract_answer("  (C) maybe ") == "(C) maybe"


def test_bbh_end_to_end_with_and_without_cot(tmp_path, tiny_checkpoint):
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    data = tmp_path / "bbh"
    (data / "bbh").mkdir(parents=True)
    (data / "cot-prompts").mkdir()
    questions = {"shapes": ["Is a ball round?", "Pick the box.", "Is ice hot?"], "colors": ["Is snow white?"]}
    for no_cot in (False, True):
        for task, qs in questions.items():
            (data / "cot-prompts" / f"{task}.txt").write_text(COT_PROMPT)
            prompt = bbh.read_prompt(data, task, cot=not no_cot)
            first = bbh.extract_answer(greedy(model, tokenizer, bbh.build_prompt(prompt, qs[0]), 5))
            examples = [{"input": q, "target": first if i == 0 else "(Z) never"} for i, q in enumerate(qs)]
            (data / "bbh" / f"{task}.json").write_text(json.dumps({"examples": examples}))
        (data / "MANIFEST.json").write_text(json.dumps({"label": "BBH (rebuilt from BIG-bench)", "source": "x"}))
        save = tmp_path / ("no_cot" if no_cot else "cot")
        metrics = bbh.main(["--data_dir", str(data), "--save_dir", str(save), "--model_name_or_path",
                            str(tiny_checkpoint), "--eval_batch_size", "3", "--max_new_tokens", "5"]
                           + (["--no_cot"] if no_cot else []))
        assert list(metrics) == ["colors", "shapes", "average_exact_match"]
        assert metrics["colors"] == 1.0 and metrics["shapes"] == pytest.approx(1 / 3)
        assert metrics["average_exact_match"] == pytest.approx((1 + 1 / 3) / 2)
        assert json.loads((save / "metrics.json").read_text()) == metrics
        assert json.loads((save / "dataset.json").read_text()) == {"name": "BBH (rebuilt from BIG-bench)",
                                                                   "source": "x", "cot": not no_cot}
        records = [json.loads(line) for line in (save / "predictions" / "shapes.jsonl").open()]
        prompt = bbh.read_prompt(data, "shapes", cot=not no_cot)
        assert [r["model_output"] for r in records] == [greedy(model, tokenizer, bbh.build_prompt(prompt, q), 5)
                                                        for q in questions["shapes"]]


def test_bbh_unknown_task_is_one_line_exit_2(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "a.json").write_text('{"examples": []}')
    with pytest.raises(SystemExit) as exc:
        bbh.main(["--data_dir", str(tmp_path), "--model_name_or_path", str(tiny_checkpoint), "--tasks", "zzz"])
    assert exc.value.code == 2 and "zzz" in capsys.readouterr().err
