"""TyDiQA GoldP evaluation, as in open-instruct (and so as in the MoS paper), with an optional adapter.

    python -m eval.tydiqa.run_eval --data_dir data/eval/tydiqa --save_dir output/run/tydiqa_results \\
        --model_name_or_path meta-llama/Llama-2-7b-hf --adapter_path output/run --eval_batch_size 16 \\
        --use_chat_format --chat_formatting_function eval.templates.create_prompt_with_tulu_chat_format

In Python, on a model already loaded: ``evaluate_tydiqa(model, tokenizer, data_dir, ...)``
returns the metrics (it writes no file unless given ``save_dir``).

Data: ``tydiqa-goldp-v1.1-dev.json`` (and ``-train.json`` for the demos) in ``--data_dir``, SQuAD-style; the
language is the prefix of each question id ("english-..."). With ``random.seed(42)`` semantics, first up to
``--max_num_examples_per_lang`` questions are sampled per language, then ``--n_shot`` demos per language
from the train file. Passages are cut to ``--max_context_length`` tokens.

Prompt: "{instruction}\\n\\n" + demos ("Passage: ..\\nQuestion: ..\\nAnswer: ..", joined by "\\n\\n") + "\\n\\n"
+ "Passage: {context}\\nQuestion: {question}\\n", with the labels of the question's language; then the
chat wrapper (``--use_chat_format``) and the answer label. Greedy generation of at most 50 tokens (without
chat format it stops at a newline); outputs are stripped.

Several adapters of a sweep (``--adapter_path a b c``) are scored on one base model load, each into its own
results directory (``--save_dir`` once per adapter, or once: then ``<save_dir>/<adapter directory name>``).

Outputs in ``--save_dir``: ``tydiaqa_predictions.jsonl`` (the original's spelling) and ``metrics.json`` =
``{lang: {"exact_match", "f1"}, ..., "average": {"f1", "exact_match"}}`` (SQuAD metric, 0-100; the average
is the unweighted mean over languages).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from eval.cli import (
    EvalInputError,
    add_overwrite_argument,
    check_save_dir,
    int_at_least,
    read_json_file,
    run_cli,
    write_metrics,
)
from eval.generation import greedy_outputs, load_model
from eval.templates import chat_function, format_chat_prompt
from eval.tydiqa.squad_metric import squad_scores
from eval.tydiqa.templates import WITH_CONTEXT, WITHOUT_CONTEXT
from eval.utils import (
    adapter_save_dirs,
    add_model_arguments,
    chat_format,
    iter_adapter_models,
    load_hf_lm,
    load_tokenizer,
    model_dtype,
    parse_eval_args,
    read_adapter_config,
    require_file,
    shared_prefix,
)
from open_instruct.files import write_jsonl_atomic

DEV_FILE = "tydiqa-goldp-v1.1-dev.json"
TRAIN_FILE = "tydiqa-goldp-v1.1-train.json"
MAX_NEW_TOKENS = 50


def load_goldp(path: Path, languages=None) -> list[dict]:
    """Flatten a SQuAD-style file into ``{"id", "lang", "context", "question", "answers"}`` examples.

    A cut-off or non-JSON file, or one without the SQuAD layout, is an EvalInputError naming the file.
    """
    data = read_json_file(path, "the TyDiQA GoldP file")
    examples = []
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    lang = qa["id"].split("-")[0]
                    if languages is None or lang in languages:
                        examples.append({"id": qa["id"], "lang": lang, "context": paragraph["context"],
                                         "question": qa["question"], "answers": qa["answers"]})
    except (KeyError, TypeError, AttributeError) as err:
        raise EvalInputError(f"{path} is not in the SQuAD layout of TyDiQA GoldP (data -> paragraphs -> qas with "
                             f"id, question, answers; missing {err}); download it again with "
                             "bash scripts/prepare_eval_data.sh") from None
    return examples


def sample_data(dev: list[dict], train: list[dict] | None, n_shot: int, max_per_lang: int | None, seed: int = 42):
    """Sample test questions per language, then ``n_shot`` demos per language, with one seeded generator.

    The order of the draws is the original's, so the same seed picks the same questions and demos.
    Returns ``(test_examples, languages, demos_by_lang)``.
    """
    rng = random.Random(seed)
    languages = sorted({ex["lang"] for ex in dev})
    unknown = [lang for lang in languages if lang not in WITH_CONTEXT]
    if unknown:
        raise EvalInputError(f"No prompt template for language(s) {unknown} (from the question id prefix); "
                         f"known languages: {sorted(WITH_CONTEXT)}.")
    if max_per_lang:
        sampled = []
        for lang in languages:
            of_lang = [ex for ex in dev if ex["lang"] == lang]
            sampled += rng.sample(of_lang, max_per_lang) if len(of_lang) > max_per_lang else of_lang
        dev = sampled
    demos = {lang: [] for lang in languages}
    if n_shot > 0:
        by_lang = {lang: [ex for ex in train if ex["lang"] == lang] for lang in languages}
        for lang in languages:
            if len(by_lang[lang]) < n_shot:
                raise EvalInputError(f"--n_shot {n_shot}: the train file has only {len(by_lang[lang])} {lang} "
                                 "examples; lower --n_shot or use the full train file.")
            demos[lang] = [dict(ex) for ex in rng.sample(by_lang[lang], n_shot)]
            for demo in demos[lang]:
                if not demo["answers"] or not str(demo["answers"][0].get("text", "")).strip():
                    raise EvalInputError(f"the demo {demo['id']!r} drawn from the train file has no answer text, so "
                                         "the prompt would teach an empty answer; fix or re-download the train file")
    return dev, languages, demos


def truncate_context(text: str, tokenizer, max_tokens: int | None) -> str:
    """Cut a passage to its first ``max_tokens`` tokens (encode without special tokens, decode)."""
    if not max_tokens:
        return text
    ids = tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.decode(ids[:max_tokens]) if len(ids) > max_tokens else text


def build_prompt(example: dict, demos: list[dict], no_context: bool = False, chat_fn=None, tokenizer=None) -> str:
    """The prompt for one question, in its language, ending with the answer label."""
    lang = example["lang"]
    if no_context:
        instruction, q_label, a_label = WITHOUT_CONTEXT[lang]
    else:
        instruction, p_label, q_label, a_label = WITH_CONTEXT[lang]
    prompt = instruction + "\n\n"
    if demos:
        blocks = []
        for demo in demos:
            qa = q_label + " " + demo["question"] + "\n" + a_label + " " + demo["answers"][0]["text"]
            blocks.append(qa if no_context else p_label + " " + demo["context"] + "\n" + qa)
        prompt += "\n\n".join(blocks) + "\n\n"
    if no_context:
        prompt += q_label + " " + str(example["question"]) + "\n"
    else:
        prompt += p_label + " " + str(example["context"]) + "\n" + q_label + " " + str(example["question"]) + "\n"
    if chat_fn is None:
        return prompt + a_label
    prompt = format_chat_prompt(chat_fn, [{"role": "user", "content": prompt}], tokenizer)
    return prompt + (a_label if prompt[-1] in ("\n", " ") else " " + a_label)


def compute_metrics(examples: list[dict], predictions: list[str], languages: list[str]) -> dict:
    """Per-language SQuAD EM/F1 and their unweighted mean, in the original's layout."""
    scores = {}
    for lang in languages:
        pairs = [(pred, [a["text"] for a in ex["answers"]]) for ex, pred in zip(examples, predictions)
                 if ex["lang"] == lang]
        scores[lang] = squad_scores([p for p, _ in pairs], [g for _, g in pairs])
    scores["average"] = {m: float(np.mean([scores[lang][m] for lang in languages])) for m in ("f1", "exact_match")}
    return scores


def read_tydiqa(data_dir: str | Path, n_shot: int = 1, max_num_examples_per_lang: int | None = None):
    """``(questions, languages, demos by language)``, checked and sampled as in the original (seed 42)."""
    data_dir = Path(data_dir)
    dev = load_goldp(require_file(data_dir / DEV_FILE, "the TyDiQA GoldP dev file"))
    unanswered = [ex["id"] for ex in dev if not ex["answers"]]
    if unanswered:
        raise EvalInputError(f"{data_dir / DEV_FILE}: {len(unanswered)} question(s) have no gold answer (first: "
                             f"{unanswered[0]!r}), so they cannot be scored; fix or re-download the file")
    languages = sorted({ex["lang"] for ex in dev})
    train = load_goldp(require_file(data_dir / TRAIN_FILE, "the TyDiQA GoldP train file (for --n_shot demos)"),
                       set(languages)) if n_shot > 0 else None
    return sample_data(dev, train, n_shot, max_num_examples_per_lang)


def evaluate_tydiqa(model, tokenizer, data, *, n_shot: int = 1, max_num_examples_per_lang: int | None = None,
                    no_context: bool = False, max_context_length: int | None = 512, chat_format=None,
                    batch_size: int = 1, shared_prefix: bool = True, save_dir: str | Path | None = None) -> dict:
    """``{lang: {"exact_match", "f1"}, ..., "average": {...}}`` of ``model`` (a Hugging Face model, its tokenizer
    left padded, or a vLLM engine). ``data``: the data folder, or what ``read_tydiqa`` returned; ``chat_format``: a
    formatting function or its name (None: plain prompts). With ``save_dir``, writes the predictions there."""
    if isinstance(data, (str, Path)):
        data = read_tydiqa(data, n_shot, max_num_examples_per_lang)
    examples, languages, demos = data

    def cut(ex):
        return {**ex, "context": truncate_context(ex["context"], tokenizer, max_context_length)}

    examples = [cut(ex) for ex in examples]
    demos = {lang: [cut(d) for d in lang_demos] for lang, lang_demos in demos.items()}
    chat_fn = chat_function(chat_format)
    prompts = [build_prompt(ex, demos[ex["lang"]], no_context, chat_fn, tokenizer) for ex in examples]
    stop = None if chat_fn is not None else ["\n"]
    outputs = greedy_outputs(model, tokenizer, prompts, MAX_NEW_TOKENS, stop, batch_size, shared_prefix)
    if save_dir is not None:
        write_jsonl_atomic(Path(save_dir) / "tydiaqa_predictions.jsonl",
                           ({**ex, "prediction_text": output} for ex, output in zip(examples, outputs)))
    metrics = compute_metrics(examples, outputs, languages)
    print(json.dumps(metrics, indent=4))
    return metrics


def run(args) -> dict:
    """Evaluate; with several ``--adapter_path`` directories the base model is loaded once (Hugging Face backend)
    and each adapter is scored into its own results directory. Returns the metrics of the last one."""
    adapters = list(args.adapter_path or [])
    save_dirs = adapter_save_dirs(adapters, args.save_dir)
    for save_dir in save_dirs:
        check_save_dir(save_dir, args.overwrite)
    for adapter in adapters:  # fail before loading anything
        read_adapter_config(adapter)
    data = read_tydiqa(args.data_dir, args.n_shot, args.max_num_examples_per_lang)
    print(f"Loaded {len(data[0])} examples from {len(data[1])} languages: {data[1]}")
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path,
                               use_fast=not args.use_slow_tokenizer)
    chat_fn = chat_function(chat_format(args))
    if len(adapters) <= 1 or args.use_vllm:  # vLLM starts one engine per adapter
        models = ((adapter, load_model(args, adapter)) for adapter in adapters or [None])
    else:
        models = iter_adapter_models(load_hf_lm(args.model_name_or_path, load_in_8bit=args.load_in_8bit,
                                                dtype=model_dtype(args)), adapters)
    for (adapter, model), save_dir in zip(models, save_dirs):
        if len(adapters) > 1:
            print(f"Adapter {adapter} -> {save_dir}")
        metrics = evaluate_tydiqa(model, tokenizer, data, no_context=args.no_context,
                                  max_context_length=args.max_context_length, chat_format=chat_fn,
                                  batch_size=args.eval_batch_size, shared_prefix=shared_prefix(args), save_dir=save_dir)
        write_metrics(save_dir, metrics)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_dir", default="data/eval/tydiqa", help=f"folder with {DEV_FILE} and {TRAIN_FILE}")
    ap.add_argument("--save_dir", default=["results/tydiqa"], nargs="+",
                    help="where metrics.json and the predictions go: one directory per --adapter_path, or one for "
                    "all of them (then a subdirectory named after each adapter directory)")
    ap.add_argument("--max_num_examples_per_lang", type=int_at_least(1), default=None,
                    help="at most this many questions per language (sampled with seed 42)")
    ap.add_argument("--n_shot", type=int_at_least(0), default=1, help="demos per language from the train file (default 1)")
    ap.add_argument("--no_context", action="store_true", help="closed book: no passage in the prompt")
    ap.add_argument("--max_context_length", type=int_at_least(0), default=512, help="passages are cut to this many tokens (0: not cut)")
    ap.add_argument("--use_vllm", action="store_true", help="generate with vLLM; if vLLM is not installed (or the "
                    "adapter is not plain LoRA) a warning is printed and Hugging Face generation is used")
    add_model_arguments(ap, batch_help="prompts per generate call (HF backend)", many_adapters=True)
    add_overwrite_argument(ap)
    return ap


def main(argv=None) -> dict:
    return run(parse_eval_args(build_parser(), argv))


if __name__ == "__main__":
    run_cli(main)
