"""BIG-bench JSON tasks -> a natural-instructions (SuperNI) task tree, plus held-out evaluation sets.

SuperNI cannot be had offline; BIG-bench's ``task.json`` files can (the ``bigbench==1.0.0`` sdist, see
``../shared/DATA.md``) and have the same shape: a task description plus input/target examples. This module
writes them in the layout ``reformat_datasets.py``'s SuperNI path reads, so training data goes through the
paper's own data path (its sampling of zero-shot and few-shot instances per task):

    OUT/super_ni/splits/xlingual/train_tasks.txt       one task name per line (the training tasks)
    OUT/super_ni/tasks/<task>.json                     Definition, Positive Examples, Instances
    OUT/heldout/seen_tasks.jsonl                       unseen instances of the training tasks (messages format)
    OUT/heldout/unseen_tasks.jsonl                     instances of whole task families held out of training
    OUT/manifest.json                                  settings, counts, and the task lists

A *family* is a top-level BIG-bench directory; its subtasks (``arithmetic/2_digit_multiplication``, ...) are
near relatives, so families, not subtasks, are held out. The BIG-bench sources of BBH and any task named in
``exclude`` (evaluation sets) are left out entirely. Conversion of one example:

- input: ``example["input"]``; for multiple-choice examples whose task appends choices (BIG-bench's
  ``append_choices_to_input``, default true) the options follow as ``"\\nOptions:\\n- a\\n- b"``;
- output: ``target`` (the first one, if a list), else the ``target_scores`` key with the highest score;
- Definition: the task description, followed by a short ``task_prefix`` when the task has one.

Examples whose input or output is empty or longer than ``max_input_chars`` / ``max_output_chars`` are dropped
(image-as-text and other very long tasks), and so are tasks left with fewer than ``min_examples``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

# The BIG-bench tasks BBH was built from (BBH's 27 tasks; boolean_expressions, multistep_arithmetic and
# web_of_lies are generators in BIG-bench, listed so that a tree that has them excludes them too).
BBH_SOURCE_FAMILIES = frozenset({
    "boolean_expressions", "causal_judgment", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies_syllogisms_negation", "geometric_shapes", "hyperbaton", "logical_deduction",
    "movie_recommendation", "multistep_arithmetic", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects", "web_of_lies", "word_sorting",
})
# Families that are themselves instruction-tuning mixtures or copies of evaluation sets used by this project.
DEFAULT_EXCLUDE = frozenset({"natural_instructions", "mmlu"})

NUM_POSITIVE_EXAMPLES = 3
HELDOUT_TEMPLATE = "{instruction}\n\n{input}\n\n"  # the first SuperNI template, fixed for held-out sets


def _as_bool(value: Any) -> bool:
    return value.strip().lower() not in ("false", "0", "no") if isinstance(value, str) else bool(value)


def convert_example(example: dict, append_choices: bool) -> tuple[str, str] | None:
    """One BIG-bench example -> ``(input, output)``, or None if it has no usable string target."""
    text = example.get("input")
    if not isinstance(text, str):
        return None
    target = example.get("target")
    if isinstance(target, list):
        target = next((t for t in target if isinstance(t, str) and t.strip()), None)
    scores = example.get("target_scores")
    if not (isinstance(target, str) and target.strip()) and isinstance(scores, dict) and scores:
        best = max(scores.values())
        target = next(k for k, v in scores.items() if v == best)  # first choice with the top score
    if not isinstance(target, str) or not target.strip() or not text.strip():
        return None
    if append_choices and isinstance(scores, dict) and scores:
        text = text.rstrip() + "\nOptions:\n" + "\n".join(f"- {choice}" for choice in scores)
    return text.strip(), target.strip()


def load_family(family_dir: Path) -> dict[str, dict]:
    """``{task_name: task_json}`` for a family directory: the task itself, or its subtasks."""
    top = family_dir / "task.json"
    tasks = {}
    if top.is_file():
        data = json.loads(top.read_text(encoding="utf-8-sig"))
        if isinstance(data.get("examples"), list):
            tasks[family_dir.name] = data
    for sub in sorted(family_dir.glob("*/task.json")):
        data = json.loads(sub.read_text(encoding="utf-8-sig"))
        if isinstance(data.get("examples"), list):
            tasks[f"{family_dir.name}__{sub.parent.name}"] = data
    return tasks


def definition_of(task: dict, max_prefix_chars: int = 300) -> str:
    description = str(task.get("description") or task.get("name") or "").strip()
    prefix = task.get("task_prefix")
    if isinstance(prefix, str) and prefix.strip() and len(prefix.strip()) <= max_prefix_chars:
        description = f"{description}\n{prefix.strip()}" if description else prefix.strip()
    return description


def to_ni_task(name: str, task: dict, max_input_chars: int, max_output_chars: int) -> dict | None:
    """A BIG-bench task -> a natural-instructions task dict (or None if nothing usable is left)."""
    append = _as_bool(task.get("append_choices_to_input", True))
    pairs = []
    for example in task["examples"]:
        pair = convert_example(example, append)
        if pair and len(pair[0]) <= max_input_chars and len(pair[1]) <= max_output_chars:
            pairs.append(pair)
    definition = definition_of(task)
    if not pairs or not definition:
        return None
    positives = [{"input": i, "output": o, "explanation": ""} for i, o in pairs[:NUM_POSITIVE_EXAMPLES]]
    instances = [{"id": f"bigbench-{name}-{k}", "input": i, "output": [o]}
                 for k, (i, o) in enumerate(pairs[NUM_POSITIVE_EXAMPLES:])]
    return {"Definition": [definition], "Source": ["bigbench"], "Positive Examples": positives,
            "Negative Examples": [], "Instances": instances}


def _heldout_record(split: str, task: str, ni_task: dict, inst: dict) -> str:
    prompt = HELDOUT_TEMPLATE.format(instruction=ni_task["Definition"][0], input=inst["input"])
    return json.dumps({"dataset": f"bigbench_{split}", "id": inst["id"], "task": task,
                       "messages": [{"role": "user", "content": prompt},
                                    {"role": "assistant", "content": inst["output"][0]}]}) + "\n"


def convert_tree(tasks_dir: str | Path, out_dir: str | Path, *, num_heldout_families: int = 15,
                 heldout_per_task: int = 10, max_input_chars: int = 1000, max_output_chars: int = 200,
                 min_examples: int = 30, max_instances_per_task: int = 500, exclude: frozenset[str] | set[str] = DEFAULT_EXCLUDE,
                 seed: int = 0) -> dict[str, Any]:
    """Convert ``tasks_dir`` (BIG-bench's ``benchmark_tasks``) into ``out_dir``; return the manifest dict.

    Training tasks lose ``heldout_per_task`` random instances to ``heldout/seen_tasks.jsonl`` (never written
    into their task file); ``num_heldout_families`` random families go whole to ``heldout/unseen_tasks.jsonl``
    (at most ``heldout_per_task`` instances per task there too, so each task weighs the same). A training task
    keeps at most ``max_instances_per_task`` random instances (the SuperNI path samples 80 per task anyway).
    """
    tasks_dir, out_dir = Path(tasks_dir), Path(out_dir)
    if not tasks_dir.is_dir():
        raise FileNotFoundError(f"{tasks_dir} is not a directory; pass BIG-bench's benchmark_tasks folder")
    skipped = sorted(BBH_SOURCE_FAMILIES | set(exclude))
    families: dict[str, dict[str, dict]] = {}
    for family_dir in sorted(p for p in tasks_dir.iterdir() if p.is_dir()):
        if family_dir.name in skipped:
            continue
        converted = {}
        for name, task in load_family(family_dir).items():
            ni = to_ni_task(name, task, max_input_chars, max_output_chars)
            if ni and len(ni["Instances"]) >= min_examples:
                converted[name] = ni
        if converted:
            families[family_dir.name] = converted
    if len(families) <= num_heldout_families:
        raise ValueError(f"only {len(families)} usable task families in {tasks_dir}; need more than "
                         f"num_heldout_families={num_heldout_families}")
    rng = random.Random(seed)
    heldout = set(rng.sample(sorted(families), k=num_heldout_families))

    ni_dir = out_dir / "super_ni"
    (ni_dir / "tasks").mkdir(parents=True, exist_ok=True)
    (ni_dir / "splits" / "xlingual").mkdir(parents=True, exist_ok=True)
    (out_dir / "heldout").mkdir(parents=True, exist_ok=True)
    train_tasks, counts = [], {"train_instances": 0, "seen_heldout": 0, "unseen_heldout": 0}
    with open(out_dir / "heldout" / "seen_tasks.jsonl", "w", encoding="utf-8") as seen_f, \
         open(out_dir / "heldout" / "unseen_tasks.jsonl", "w", encoding="utf-8") as unseen_f:
        for family in sorted(families):
            for name, ni in sorted(families[family].items()):
                instances = list(ni["Instances"])
                rng.shuffle(instances)
                held = instances[:heldout_per_task]
                kept = instances[heldout_per_task:heldout_per_task + max_instances_per_task]
                if family in heldout:
                    for inst in held:
                        unseen_f.write(_heldout_record("unseen", name, ni, inst))
                    counts["unseen_heldout"] += len(held)
                    continue
                for inst in held:
                    seen_f.write(_heldout_record("seen", name, ni, inst))
                counts["seen_heldout"] += len(held)
                ni = dict(ni, Instances=sorted(kept, key=lambda inst: int(inst["id"].rsplit("-", 1)[1])))
                (ni_dir / "tasks" / f"{name}.json").write_text(json.dumps(ni, ensure_ascii=False), encoding="utf-8")
                train_tasks.append(name)
                counts["train_instances"] += len(kept)
    (ni_dir / "splits" / "xlingual" / "train_tasks.txt").write_text("\n".join(train_tasks) + "\n", encoding="utf-8")
    manifest = {
        "source": str(tasks_dir), "seed": seed, "num_heldout_families": num_heldout_families,
        "heldout_per_task": heldout_per_task, "max_input_chars": max_input_chars,
        "max_output_chars": max_output_chars, "min_examples": min_examples,
        "max_instances_per_task": max_instances_per_task,
        "excluded_families": skipped, "heldout_families": sorted(heldout),
        "train_families": sorted(set(families) - heldout), "train_tasks": len(train_tasks), **counts,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tasks_dir", required=True, help="BIG-bench's bigbench/benchmark_tasks folder")
    ap.add_argument("--output_dir", required=True, help="where super_ni/, heldout/ and manifest.json go")
    ap.add_argument("--num_heldout_families", type=int, default=15, help="task families held out whole")
    ap.add_argument("--heldout_per_task", type=int, default=10, help="held-out instances per task")
    ap.add_argument("--max_input_chars", type=int, default=1000)
    ap.add_argument("--max_output_chars", type=int, default=200)
    ap.add_argument("--min_examples", type=int, default=30, help="drop tasks with fewer usable examples")
    ap.add_argument("--max_instances_per_task", type=int, default=500, help="cap on a training task's instances")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        manifest = convert_tree(args.tasks_dir, args.output_dir, num_heldout_families=args.num_heldout_families,
                                heldout_per_task=args.heldout_per_task, max_input_chars=args.max_input_chars,
                                max_output_chars=args.max_output_chars, min_examples=args.min_examples,
                                max_instances_per_task=args.max_instances_per_task,
                                seed=args.seed)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"bigbench -> super_ni: {manifest['train_tasks']} training tasks "
          f"({len(manifest['train_families'])} families, {manifest['train_instances']} instances); held out "
          f"{manifest['seen_heldout']} instances of seen tasks and {manifest['unseen_heldout']} of "
          f"{len(manifest['heldout_families'])} unseen families -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
