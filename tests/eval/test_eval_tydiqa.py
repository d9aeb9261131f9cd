"""TyDiQA evaluator: SQuAD metric by hand, prompts in two languages, an end-to-end run on a tiny model."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.templates import create_prompt_with_tulu_chat_format
from eval.tydiqa import run_eval as tydiqa
from eval.tydiqa.squad_metric import normalize_answer, squad_scores


def goldp(paragraphs):
    """A SQuAD-style GoldP file: [(context, [(id, question, answer), ...]), ...]."""
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": ctx, "qas": [{"id": qid, "question": q,
                                  "answers": [{"text": a, "answer_start": max(ctx.find(a), 0)}]}
                                 for qid, q, a in qas]} for ctx, qas in paragraphs]}]}


DEV = goldp([
    ("Helsinki is the capital of Finland.", [("english-1", "What is the capital of Finland?", "Helsinki"),
                                             ("english-2", "Which country is it?", "Finland")]),
    ("Helsinki on Suomen pääkaupunki.", [("finnish-1", "Mikä on Suomen pääkaupunki?", "Helsinki")]),
])
TRAIN = goldp([
    ("Paris is the capital of France.", [("english-t1", "What is the capital of France?", "Paris")]),
    ("Tukholma on Ruotsin pääkaupunki.", [("finnish-t1", "Mikä on Ruotsin pääkaupunki?", "Tukholma")]),
])


def test_normalize_answer():
    assert normalize_answer("  The  Quick, brown fox!! ") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_squad_metric_by_hand():
    predictions = ["the Helsinki", "Helsinki, Finland!", "an apple a day", "", "Paris France"]
    golds = [["Helsinki"], ["helsinki"], ["apple day", "banana"], ["Paris"], ["Paris", "France Paris"]]
    # per question (EM, F1): (1, 1), (0, 2/3: P=1/2 R=1), (1, 1), (0, 0), (0, max(2/3, 1) = 1)
    scores = squad_scores(predictions, golds)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 5)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0 + 1) / 5)
    assert squad_scores(["x"], [["y"]]) == {"exact_match": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="no gold answer"):
        squad_scores(["x"], [[]])


def test_prompts_in_two_languages():
    english = {"lang": "english", "context": "Helsinki is the capital of Finland.",
               "question": "What is the capital of Finland?"}
    demo = {"context": "Paris is the capital of France.", "question": "What is the capital of France?",
            "answers": [{"text": "Paris"}]}
    assert tydiqa.build_prompt(english, [demo]) == (
        "Answer the following question based on the information in the given passage.\n\n"
        "Passage: Paris is the capital of France.\nQuestion: What is the capital of France?\nAnswer: Paris\n\n"
        "Passage: Helsinki is the capital of Finland.\nQuestion: What is the capital of Finland?\nAnswer:")
    finnish = {"lang": "finnish", "context": "Helsinki on Suomen pääkaupunki.",
               "question": "Mikä on Suomen pääkaupunki?"}
    fi_demo = {"context": "Tukholma on Ruotsin pääkaupunki.", "question": "Mikä on Ruotsin pääkaupunki?",
               "answers": [{"text": "Tukholma"}]}
    assert tydiqa.build_prompt(finnish, [fi_demo], chat_fn=create_prompt_with_tulu_chat_format) == (
        "<|user|>\nVastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.\n\n"
        "Kappale: Tukholma on Ruotsin pääkaupunki.\nKysymys: Mikä on Ruotsin pääkaupunki?\nVastaus: Tukholma\n\n"
        "Kappale: Helsinki on Suomen pääkaupunki.\nKysymys: Mikä on Suomen pääkaupunki?\n\n"
        "<|assistant|>\nVastaus:")
    assert tydiqa.build_prompt(finnish, [], no_context=True) == (
        "Vastaa seuraavaan kysymykseen.\n\nKysymys: Mikä on Suomen pääkaupunki?\nVastaus:")


def test_context_truncation_and_unknown_language(tiny_tokenizer):
    text = "Helsinki is the capital of Finland. " * 20
    cut = tydiqa.truncate_context(text, tiny_tokenizer, 5)
    assert tiny_tokenizer.encode(cut, add_special_tokens=False) == tiny_tokenizer.encode(text)[:5]
    assert tydiqa.truncate_context("short", tiny_tokenizer, 512) == "short"
    with pytest.raises(ValueError, match="klingon"):
        tydiqa.sample_data([{"lang": "klingon"}], None, 0, None)


def greedy(model, tokenizer, prompt, stop=None):
    """Independent single-prompt greedy decoding: new tokens only, cut at the stop string, stripped."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=50, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return (text.split(stop)[0] if stop else text).strip()


def test_end_to_end_on_tiny_model(tmp_path, tiny_checkpoint):
    data = tmp_path / "tydiqa"
    data.mkdir()
    (data / "tydiqa-goldp-v1.1-train.json").write_text(json.dumps(TRAIN, ensure_ascii=False))
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)

    # Generate the answer of english-1 independently and make it the gold answer: english EM = 50, finnish 0.
    demo = {"context": "Paris is the capital of France.", "question": "What is the capital of France?",
            "answers": [{"text": "Paris"}]}
    first = {"lang": "english", "context": "Helsinki is the capital of Finland.",
             "question": "What is the capital of Finland?"}
    prompt = tydiqa.build_prompt(first, [demo], chat_fn=create_prompt_with_tulu_chat_format)
    predicted = greedy(model, tokenizer, prompt)
    assert normalize_answer(predicted), "the tiny model should produce some text"
    dev = json.loads(json.dumps(DEV))
    dev["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"text": "nothing like it", "answer_start": 0},
                                                            {"text": predicted, "answer_start": 0}]
    (data / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(dev, ensure_ascii=False))

    save = tmp_path / "out"
    with pytest.warns(UserWarning, match="vLLM is not installed"):  # --use_vllm falls back to HF generation
        metrics = tydiqa.main(["--data_dir", str(data), "--save_dir", str(save), "--model_name_or_path",
                               str(tiny_checkpoint), "--eval_batch_size", "2", "--use_chat_format", "--use_vllm",
                               "--chat_formatting_function", "eval.templates.create_prompt_with_tulu_chat_format"])
    on_disk = json.loads((save / "metrics.json").read_text())
    assert on_disk == metrics
    assert list(on_disk) == ["english", "finnish", "average"]
    for lang in ("english", "finnish"):
        assert list(on_disk[lang]) == ["exact_match", "f1"]
    assert list(on_disk["average"]) == ["f1", "exact_match"]
    assert on_disk["english"]["exact_match"] == pytest.approx(50.0)
    assert on_disk["finnish"]["exact_match"] == 0.0
    assert on_disk["average"]["exact_match"] == pytest.approx(25.0)
    assert on_disk["average"]["f1"] == pytest.approx((on_disk["english"]["f1"] + on_disk["finnish"]["f1"]) / 2)

    lines = [json.loads(line) for line in (save / "tydiaqa_predictions.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["english-1", "english-2", "finnish-1"]
    assert set(lines[0]) == {"id", "lang", "context", "question", "answers", "prediction_text"}
    assert lines[0]["prediction_text"] == predicted
    # every batched prediction equals single-prompt greedy decoding of the same prompt
    demos = {"english": [demo], "finnish": [{"context": "Tukholma on Ruotsin pääkaupunki.",
                                             "question": "Mikä on Ruotsin pääkaupunki?",
                                             "answers": [{"text": "Tukholma"}]}]}
    for line in lines:
        p = tydiqa.build_prompt(line, demos[line["lang"]], chat_fn=create_prompt_with_tulu_chat_format)
        assert line["prediction_text"] == greedy(model, tokenizer, p)


def test_missing_train_file_is_named(tmp_path, tiny_checkpoint):
    (tmp_path / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(DEV))
    with pytest.raises(FileNotFoundError, match="tydiqa-goldp-v1.1-train.json.*prepare_eval_data.sh"):
        tydiqa.main(["--data_dir", str(tmp_path), "--model_name_or_path", str(tiny_checkpoint)])
