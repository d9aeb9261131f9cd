"""HumanEval: functional correctness of generated code, unbiased pass@k over n samples per problem.

    python -m eval.codex_humaneval.run_eval --data_file data/eval/codex_humaneval/HumanEval.jsonl.gz \\
        --save_dir output/run/codex_results/pass1 --eval_pass_at_ks 1 5 10 20 --unbiased_sampling_size_n 20 \\
        --temperature 0.1 --model_name_or_path BASE --adapter_path output/run --use_chat_format
    python -m eval.codex_humaneval.run_eval --completions_file samples.jsonl --save_dir DIR   # no model

In Python, on a model already loaded: ``evaluate_humaneval(model, tokenizer, data_file, n=20, ...)``
returns the metrics (it writes no file unless given ``save_dir``).

Prompt: the problem's ``prompt`` (function signature and docstring). With ``--use_chat_format`` the user turn
is "Complete the following python function.\\n\\n\\n" + prompt and the assistant turn starts with
"Here is the completed function:\\n\\n\\n" + prompt. ``--unbiased_sampling_size_n`` samples per problem
(temperature ``--temperature``, top-p 0.95, at most 512 new tokens), cut at the Codex stop sequences
("\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint").

Scoring: each program (prompt + completion + the problem's tests + ``check(entry_point)``) runs alone in a
sandbox (``eval/codex_humaneval/sandbox.py``: bubblewrap, no network, read-only system, fresh directory,
CPU/memory/process limits, wall clock); it passes only if the tests finished. pass@k = mean over problems of
1 - C(n-c, k) / C(n, k) (n samples, c correct), for each k <= n.

``--completions_file``: a JSONL of ``{"task_id", "completion"}`` lines (human-eval's sample format), scored
without a model; problems absent from it are left out.

Outputs in ``--save_dir``: ``codex_eval_predictions.jsonl`` (one line per sample: task_id, prompt,
completion), ``codex_eval_predictions_with_results.jsonl`` (plus passed, result) and ``metrics.json`` =
``{"pass@1": .., ...}``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eval.cli import add_overwrite_argument, read_jsonl_file, write_metrics
from eval.codex_humaneval.sandbox import Limits, Sandbox, SandboxUnavailable
from eval.generation import add_generation_arguments, load_model, run_cli, sampled_outputs
from eval.templates import chat_function, format_chat_prompt
from eval.utils import chat_format, load_tokenizer, require_file
from open_instruct.files import write_jsonl_atomic

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
MAX_NEW_TOKENS = 512
TOP_P = 0.95


def read_problems(path: str | Path) -> list[dict]:
    problems = read_jsonl_file(require_file(path, "the HumanEval problems (HumanEval.jsonl.gz)"))
    for p in problems:
        missing = {"task_id", "prompt", "test", "entry_point"} - set(p)
        if missing:
            raise ValueError(f"{path}: problem {p.get('task_id', '?')} lacks {sorted(missing)}; expected "
                             "HumanEval's format (task_id, prompt, canonical_solution, test, entry_point).")
    return problems


def build_program(problem: dict, completion: str) -> str:
    """The program that is run: prompt + completion, the tests, then the call of ``check``."""
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k), as a numerically stable product."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_ks(correct_by_task: dict[str, list[bool]], ks: list[int]) -> dict:
    """``{"pass@k": mean over problems}`` for every k not larger than each problem's sample count."""
    counts = [(len(v), sum(v)) for v in correct_by_task.values()]
    smallest = min(n for n, _ in counts)
    metrics = {}
    for k in ks:
        if k > smallest:
            print(f"[notice] pass@{k} skipped: only {smallest} sample(s) for some problem (need n >= k).")
            continue
        metrics[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
    return metrics


def score(samples: list[dict], problems: dict[str, dict], sandbox: Sandbox, workers: int) -> list[dict]:
    """Run every sample's program in the sandbox; returns the samples with ``passed`` and ``result``."""
    def check(sample: dict) -> dict:
        outcome = sandbox.run(build_program(problems[sample["task_id"]], sample["completion"]))
        return {**sample, "passed": outcome.passed, "result": outcome.result}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(check, samples), total=len(samples), desc=f"Running tests ({sandbox.kind})"))


def make_prompt(problem: dict, chat_fn, tokenizer) -> str:
    if chat_fn is None:
        return problem["prompt"]
    messages = [{"role": "user", "content": "Complete the following python function.\n\n\n" + problem["prompt"]}]
    prompt = format_chat_prompt(chat_fn, messages, tokenizer)
    return prompt + "Here is the completed function:\n\n\n" + problem["prompt"]


def generate_samples(model, tokenizer, problems: list[dict], n: int, temperature: float, seed: int = 0,
                     chat_fn=None, max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 1) -> list[dict]:
    prompts = [make_prompt(p, chat_fn, tokenizer) for p in problems]
    outputs = sampled_outputs(model, tokenizer, prompts, n, temperature, TOP_P, max_new_tokens, STOP_SEQUENCES,
                              batch_size, seed=seed)
    return [{"task_id": p["task_id"], "prompt": prompt, "completion": c}
            for p, prompt, completions in zip(problems, prompts, outputs) for c in completions]


def read_completions(path: str | Path, problems: dict[str, dict]) -> list[dict]:
    samples = read_jsonl_file(require_file(path, "the completions file (--completions_file)"))
    for i, s in enumerate(samples, 1):
        if not isinstance(s, dict) or "task_id" not in s or "completion" not in s:
            raise ValueError(f"{path} line {i}: expected an object with task_id and completion.")
        if s["task_id"] not in problems:
            raise ValueError(f"{path} line {i}: task_id {s['task_id']!r} is not in the problems file.")
    if not samples:
        raise ValueError(f"{path} holds no completions.")
    return [{"task_id": s["task_id"], "prompt": problems[s["task_id"]]["prompt"], "completion": s["completion"]}
            for s in samples]


def open_sandbox(limits: Limits | None = None, weak: bool = False) -> Sandbox:
    """``Sandbox(limits, weak)``; where code cannot be run safely, a ValueError that says why and what to do."""
    try:
        return Sandbox(limits or Limits(), weak=weak)
    except SandboxUnavailable as err:
        raise ValueError(str(err)) from None


def evaluate_humaneval(model, tokenizer, data, *, ks: tuple[int, ...] = (1,), n: int = 20,
                       temperature: float = 0.1, seed: int = 0, max_num_examples: int | None = None, chat_format=None,
                       max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 1, sandbox: Sandbox | None = None,
                       n_workers: int = 4, samples: list[dict] | None = None,
                       save_dir: str | Path | None = None) -> dict:
    """``{"pass@k": ..}`` for each k of ``ks``, of ``n`` samples per problem from ``model`` (a Hugging Face model,
    its tokenizer left padded, or a vLLM engine), each program run in ``sandbox`` (default: ``Sandbox()``, which
    refuses without bubblewrap). ``data``: the problems file, or the problems ``read_problems`` returned;
    ``samples``: completions to score instead of generating (``model`` and ``tokenizer`` may then be None). With
    ``save_dir``, the samples and their results are written there."""
    problems = read_problems(data)[:max_num_examples or None] if isinstance(data, (str, Path)) else data
    sandbox = sandbox or open_sandbox()
    if samples is None:
        samples = generate_samples(model, tokenizer, problems, n, temperature, seed, chat_function(chat_format),
                                   max_new_tokens, batch_size)
    if save_dir is not None:
        save_dir = Path(save_dir)
        write_jsonl_atomic(save_dir / "codex_eval_predictions.jsonl", samples, ensure_ascii=True)

    results = score(samples, {p["task_id"]: p for p in problems}, sandbox, n_workers)
    if save_dir is not None:
        write_jsonl_atomic(save_dir / "codex_eval_predictions_with_results.jsonl", results, ensure_ascii=True)
    correct: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        correct[r["task_id"]].append(r["passed"])
    metrics = pass_at_ks(correct, list(ks))
    print(f"{len(correct)} problems, {len(results)} samples, sandbox: {sandbox.kind}: {json.dumps(metrics)}")
    return metrics


def run(args) -> dict:
    for k in args.eval_pass_at_ks:
        if k < 1:
            raise ValueError(f"--eval_pass_at_ks must be positive integers, got {k}.")
    if args.unbiased_sampling_size_n < 1 or args.temperature < 0 or args.timeout <= 0 or args.n_workers < 1:
        raise ValueError("--unbiased_sampling_size_n and --n_workers must be >= 1, --temperature >= 0 and "
                         "--timeout > 0.")
    problems = read_problems(args.data_file)
    if args.max_num_examples:
        problems = problems[: args.max_num_examples]
    # refuse before any generation when code cannot be run safely
    sandbox = open_sandbox(Limits(timeout=args.timeout, memory_mb=args.max_memory_mb), args.allow_weak_sandbox)
    model = tokenizer = samples = chat_fn = None
    if args.completions_file:
        samples = read_completions(args.completions_file, {p["task_id"]: p for p in problems})
    elif not args.model_name_or_path:
        raise ValueError("give --model_name_or_path (to generate completions) or --completions_file.")
    else:
        tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path,
                                   use_fast=not args.use_slow_tokenizer)
        chat_fn = chat_function(chat_format(args))
        model = load_model(args, args.adapter_path)
    metrics = evaluate_humaneval(model, tokenizer, problems, ks=tuple(args.eval_pass_at_ks),
                                 n=args.unbiased_sampling_size_n, temperature=args.temperature, seed=args.seed,
                                 chat_format=chat_fn, max_new_tokens=args.max_new_tokens,
                                 batch_size=args.eval_batch_size, sandbox=sandbox, n_workers=args.n_workers,
                                 samples=samples, save_dir=args.save_dir)
    write_metrics(args.save_dir, metrics)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_file", default="data/eval/codex_humaneval/HumanEval.jsonl.gz",
                    help="HumanEval problems, .jsonl or .jsonl.gz")
    ap.add_argument("--save_dir", default="results/codex_humaneval", help="where metrics.json and the samples go")
    add_overwrite_argument(ap)
    ap.add_argument("--max_num_examples", type=int, default=None, help="only the first N problems")
    ap.add_argument("--eval_pass_at_ks", type=int, nargs="+", default=[1], help="k values of pass@k (default 1)")
    ap.add_argument("--unbiased_sampling_size_n", type=int, default=20, help="samples per problem (default 20)")
    ap.add_argument("--temperature", type=float, default=0.1, help="sampling temperature (0: greedy)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--completions_file", default=None, help="score these completions (JSONL of task_id, "
                    "completion) instead of generating; no model needed")
    ap.add_argument("--timeout", type=float, default=3.0, help="wall-clock seconds per program (default 3)")
    ap.add_argument("--max_memory_mb", type=int, default=2048, help="address-space limit per program")
    ap.add_argument("--n_workers", type=int, default=4, help="programs run at the same time")
    ap.add_argument("--allow_weak_sandbox", action="store_true", help="when bubblewrap is missing or does not "
                    "work, run model-written code anyway with resource limits only (NO filesystem or network "
                    "isolation); without this flag the evaluator refuses")
    add_generation_arguments(ap, MAX_NEW_TOKENS, verb="sample")
    ap.set_defaults(model_optional=True)  # --completions_file needs no model
    return ap


def main(argv=None) -> dict:
    return run_cli(run, build_parser(), argv)


if __name__ == "__main__":
    main()
