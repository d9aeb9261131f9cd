"""BBH (rebuilt from BIG-bench): BBH's task files approximated from the BIG-bench sources BBH was made from.

BBH itself (the authors' 250-example reformatted subsets) ships in no package. This rebuilds 24 of its 27
tasks from the BIG-bench ``task.json`` files in the ``bigbench`` sdist: for each task a fixed-seed sample of
up to 250 examples, put into BBH's input format (the question, then "Options:" with "(A) ..." lines or
"- Yes"/"- No" lines) with BBH's answer format ("(B)", "Yes", "valid", "yes", a number, a word list...).
boolean_expressions, multistep_arithmetic_two and web_of_lies exist in BIG-bench only as generators and are
left out. The chain-of-thought prompts (3 exemplars per task, BBH's own) come from ``deepeval``; each prompt
file gets a two-line header like the original files, which the evaluator skips. Examples that a prompt shows
as exemplars are left out of that task's sample.

The result is an approximation: other examples, other option orders. It is labelled
"BBH (rebuilt from BIG-bench)" wherever it is shown and must not be compared with published BBH numbers.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from eval.data_prep.packages import Archive, PackageError, fetch

LABEL = "BBH (rebuilt from BIG-bench)"
PER_TASK = 250
SEED = 1234
BIGBENCH_ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks/"
COT_ROOT = "deepeval/benchmarks/big_bench_hard/cot_prompts/"
GENERATOR_ONLY = ("boolean_expressions", "multistep_arithmetic_two", "web_of_lies")


def _correct(example: dict) -> str:
    best = [k for k, v in example["target_scores"].items() if v == max(example["target_scores"].values())]
    if len(best) != 1 or example["target_scores"][best[0]] <= 0:
        raise ValueError("no single correct choice")
    return best[0]


def lettered(question: str, example: dict, rng: random.Random, shuffle: bool) -> dict:
    """BBH's multiple-choice format: the options as "(A) .." lines, the answer as "(X)"."""
    choices = list(example["target_scores"])
    if shuffle:
        rng.shuffle(choices)
    correct = _correct(example)
    lines = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))
    return {"input": f"{question.rstrip()}\nOptions:\n{lines}", "target": f"({chr(65 + choices.index(correct))})"}


def worded(question: str, example: dict, options: list[str], mapping: dict | None = None) -> dict:
    """BBH's yes/no-style format: "- Yes" lines, the answer word itself."""
    correct = _correct(example)
    target = mapping[correct] if mapping else correct
    lines = "\n".join(f"- {o}" for o in options)
    return {"input": f"{question.rstrip()}\nOptions:\n{lines}", "target": target}


def _two_sentences(pattern: str, text: str) -> tuple[str, str]:
    match = re.search(pattern, text, flags=re.DOTALL)
    if match is None:
        raise ValueError("unexpected input layout")
    return match.group(1).strip(), match.group(2).strip()


def _pair(head: str, example: dict, pattern: str, keys: tuple[str, str]) -> dict:
    a, b = _two_sentences(pattern, example["input"])
    target = "(A)" if _correct(example) == keys[0] else "(B)"
    return {"input": f"{head}\nOptions:\n(A) {a}\n(B) {b}", "target": target}


def _count_target(example: dict) -> str:
    digits = [t for t in example["target"] if str(t).strip().isdigit()]
    if not digits:
        raise ValueError("no numeric target")
    return str(digits[0]).strip()


# BBH task -> (BIG-bench task path, converter(example, task_json, rng) -> {"input", "target"})
TASKS = {
    "causal_judgement": ("causal_judgment", lambda ex, t, rng: worded(
        "How would a typical person answer each of the following questions about causation?\n" + ex["input"],
        ex, ["Yes", "No"])),
    "date_understanding": ("date_understanding", lambda ex, t, rng: lettered(ex["input"], ex, rng, True)),
    "disambiguation_qa": ("disambiguation_qa", lambda ex, t, rng: lettered(
        "In the following sentences, explain the antecedent of the pronoun (which thing the pronoun refers to), "
        "or state that it is ambiguous.\nSentence: " + ex["input"], ex, rng, False)),
    "dyck_languages": ("dyck_languages", lambda ex, t, rng: {
        "input": "Complete the rest of the sequence, making sure that the parentheses are closed properly. "
                 "Input: " + ex["input"].strip(), "target": _correct(ex)}),
    "formal_fallacies": ("formal_fallacies_syllogisms_negation", lambda ex, t, rng: worded(
        ex["input"].replace("\n ", " ").strip(), ex, ["valid", "invalid"])),
    "geometric_shapes": ("geometric_shapes", lambda ex, t, rng: lettered(ex["input"], ex, rng, False)),
    "hyperbaton": ("hyperbaton", lambda ex, t, rng: _pair(
        "Which sentence has the correct adjective order:", ex, r'a "(.*?)" b "(.*?)" \?', ("a", "b"))),
    **{f"logical_deduction_{n}_objects": (f"logical_deduction/{n}_objects", lambda ex, t, rng: lettered(
        t["task_prefix"].replace("\n", " ").strip() + " " + ex["input"], ex, rng, False))
       for n in ("three", "five", "seven")},
    "movie_recommendation": ("movie_recommendation", lambda ex, t, rng: lettered(
        "Find a movie similar to " + ex["input"], ex, rng, True)),
    "navigate": ("navigate", lambda ex, t, rng: worded(
        "If you follow these instructions, do you return to the starting point? " + ex["input"], ex,
        ["Yes", "No"], {"True": "Yes", "False": "No"})),
    "object_counting": ("object_counting", lambda ex, t, rng: {"input": ex["input"], "target": _count_target(ex)}),
    "penguins_in_a_table": ("penguins_in_a_table", lambda ex, t, rng: lettered(
        t["task_prefix"].replace("\n", " ").strip() + " " + ex["input"], ex, rng, True)),
    "reasoning_about_colored_objects": ("reasoning_about_colored_objects",
                                        lambda ex, t, rng: lettered(ex["input"], ex, rng, False)),
    "ruin_names": ("ruin_names", lambda ex, t, rng: lettered(ex["input"], ex, rng, True)),
    "salient_translation_error_detection": ("salient_translation_error_detection", lambda ex, t, rng: lettered(
        t["task_prefix"].strip() + " " + ex["input"], ex, rng, False)),
    "snarks": ("snarks", lambda ex, t, rng: _pair(
        "Which statement is sarcastic?", ex, r"\(a\)(.*?)\(b\)(.*)$", ("(a)", "(b)"))),
    "sports_understanding": ("sports_understanding", lambda ex, t, rng: {
        "input": f'Is the following sentence plausible? "{ex["input"].strip().rstrip(".")}."',
        "target": "yes" if _correct(ex) == "plausible" else "no"}),
    "temporal_sequences": ("temporal_sequences", lambda ex, t, rng: lettered(ex["input"], ex, rng, True)),
    **{f"tracking_shuffled_objects_{n}_objects": (f"tracking_shuffled_objects/{n}_objects",
                                                  lambda ex, t, rng: lettered(ex["input"], ex, rng, False))
       for n in ("three", "five", "seven")},
    "word_sorting": ("word_sorting", lambda ex, t, rng: {
        "input": "Sort the following words alphabetically: List: " + ex["input"].strip(),
        "target": ex["target"] if isinstance(ex["target"], str) else ex["target"][0]}),
}


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def _question(text: str) -> str:
    return _key(text.split("\nOptions:")[0])


def is_exemplar(example: dict, exemplar_questions: list[str], shared: set[str]) -> bool:
    """Whether a converted example is one of the prompt's exemplars: the same input, or (when the question
    part is not a header shared by many examples) the same question with the options in another order."""
    full = {_key(q) for q in exemplar_questions}
    parts = {_question(q) for q in exemplar_questions}
    question = _question(example["input"])
    return _key(example["input"]) in full or (question in parts and question not in shared)


def convert_task(bbh_task: str, task_json: dict, per_task: int = PER_TASK, seed: int = SEED,
                 cot_prompt: str = "") -> list[dict]:
    """A fixed-seed sample of up to ``per_task`` examples of one task, in BBH's format.

    Examples the converter cannot read (no single correct choice, another layout) and the examples that the
    chain-of-thought prompt already shows as exemplars (``cot_prompt``) are left out before sampling.
    """
    _, convert = TASKS[bbh_task]
    rng = random.Random(f"{seed}-{bbh_task}")
    converted = []
    for example in task_json["examples"]:
        try:
            converted.append(convert(example, task_json, rng))
        except (ValueError, KeyError, TypeError):
            continue
    exemplars = re.findall(r"^Q: (.*?)\nA:", cot_prompt, flags=re.DOTALL | re.MULTILINE)
    if exemplars:
        counts: dict[str, int] = {}
        for ex in converted:
            counts[_question(ex["input"])] = counts.get(_question(ex["input"]), 0) + 1
        shared = {q for q, n in counts.items() if n > 1}
        converted = [ex for ex in converted if not is_exemplar(ex, exemplars, shared)]
    if not converted:
        raise PackageError(f"BIG-bench task {TASKS[bbh_task][0]} gave no usable example for {bbh_task}.")
    return rng.sample(converted, per_task) if len(converted) > per_task else converted


def build_bbh(out: Path, cache: Path, per_task: int = PER_TASK) -> None:
    """``out/bbh/<task>.json`` ({"examples": [{"input", "target"}]}) and ``out/cot-prompts/<task>.txt``."""
    (out / "bbh").mkdir(parents=True)
    (out / "cot-prompts").mkdir()
    cot_prompts = {}
    with Archive(fetch("deepeval", cache)) as prompts:
        for task in TASKS:
            text = cot_prompts[task] = prompts.read(f"{COT_ROOT}{task}.txt").decode("utf-8")
            header = f"{LABEL}: chain-of-thought prompt of the BBH task {task} (from the deepeval package)\n-----\n"
            (out / "cot-prompts" / f"{task}.txt").write_text(header + text.strip() + "\n", encoding="utf-8")
    with Archive(fetch("bigbench", cache)) as bigbench:
        for task, (source, _) in TASKS.items():
            task_json = json.loads(bigbench.read(f"{BIGBENCH_ROOT}{source}/task.json"))
            examples = convert_task(task, task_json, per_task, cot_prompt=cot_prompts[task])
            (out / "bbh" / f"{task}.json").write_text(json.dumps({"examples": examples}, indent=1,
                                                                 ensure_ascii=False), encoding="utf-8")
    (out / "README.txt").write_text(
        f"{LABEL}\n\nNot BBH: an approximation built by eval/data_prep/bbh.py from BIG-bench task.json files "
        f"(fixed-seed samples of up to {per_task} examples per task, BBH's input and answer formats) with BBH's "
        "chain-of-thought prompts. Tasks left out (BIG-bench generators only): " + ", ".join(GENERATOR_ONLY)
        + ".\nDo not compare its scores with published BBH numbers.\n", encoding="utf-8")
