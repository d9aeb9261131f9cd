"""Text generation for the generative evaluators (GSM8K, BBH, HumanEval), and their command-line wrapper.

* ``load_model``: the model to generate with: a vLLM engine (``--use_vllm``, when it is installed and the adapter
  is plain LoRA) or, otherwise, the Hugging Face model.
* ``greedy_outputs``: greedy generation with either (Hugging Face: batched ``eval.utils.generate_completions``).
* ``sampled_outputs``: ``n`` sampled completions per prompt (temperature, top-p), same two backends.
* ``run_cli``: runs an evaluator's ``run(args)`` and turns bad input (missing files, bad values) into one line
  on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from eval.utils import (
    VllmEngine,
    _cut_at_stop,
    add_model_arguments,
    generate_completions,
    generate_with_vllm,
    input_device,
    load_hf_lm,
    load_vllm_model,
    model_dtype,
    parse_eval_args,
)


def load_model(args, adapter: str | None = None):
    """What a generative evaluator generates with: a ``VllmEngine`` (``--use_vllm``, when vLLM is installed and the
    adapter is plain LoRA) or, otherwise, the Hugging Face model with ``adapter`` attached."""
    if getattr(args, "use_vllm", False):
        engine = load_vllm_model(args.model_name_or_path, args.tokenizer_name_or_path, adapter, args.use_slow_tokenizer)
        if engine is not None:
            return engine
    return load_hf_lm(args.model_name_or_path, adapter_path=adapter, load_in_8bit=args.load_in_8bit,
                      dtype=model_dtype(args))


def greedy_outputs(model, tokenizer, prompts: list[str], max_new_tokens: int, stop: list[str] | None,
                   batch_size: int = 1, shared_prefix: bool = True, desc: str = "Generating") -> list[str]:
    """Greedy completions of ``prompts`` (stripped, cut before the first stop sequence) from a Hugging Face model
    or a ``VllmEngine``."""
    if isinstance(model, VllmEngine):
        return generate_with_vllm(model.llm, prompts, max_new_tokens, stop, model.lora_request)
    return generate_completions(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                stop_sequences=stop, desc=desc, shared_prefix=shared_prefix)


@torch.inference_mode()
def hf_sample(model, tokenizer, prompts: list[str], n: int, temperature: float, top_p: float,
              max_new_tokens: int, stop: list[str] | None, batch_size: int = 1, seed: int = 0) -> list[list[str]]:
    """``n`` completions per prompt with Hugging Face ``generate`` (left padded batches of prompts; each
    prompt's ``n`` samples come from ``num_return_sequences``). Greedy (n identical copies) when
    ``temperature`` is 0. Texts are cut before the first stop sequence; not stripped (code keeps its indent).
    """
    if tokenizer.padding_side != "left":
        raise ValueError("hf_sample needs tokenizer.padding_side == 'left' (see eval.utils.load_tokenizer).")
    torch.manual_seed(seed)
    device = input_device(model)
    results: list[list[str]] = []
    sampling = temperature > 0
    for start in tqdm(range(0, len(prompts), batch_size), desc="Sampling", leave=False):
        batch = tokenizer(prompts[start:start + batch_size], padding="longest", return_tensors="pt").to(device)
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, do_sample=sampling,
                      num_return_sequences=n if sampling else 1)
        if sampling:
            kwargs.update(temperature=temperature, top_p=top_p)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tokenizer)
        generated = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        texts = tokenizer.batch_decode(generated[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
        per_prompt = n if sampling else 1
        for i in range(len(texts) // per_prompt):
            chunk = [_cut_at_stop(t, stop) for t in texts[i * per_prompt:(i + 1) * per_prompt]]
            results.append(chunk if sampling else chunk * n)
    return results


def sampled_outputs(model, tokenizer, prompts: list[str], n: int, temperature: float, top_p: float,
                    max_new_tokens: int, stop: list[str] | None, batch_size: int = 1, seed: int = 0) -> list[list[str]]:
    """``n`` completions per prompt from a ``VllmEngine`` or a Hugging Face model (``hf_sample``)."""
    if isinstance(model, VllmEngine):
        import vllm

        params = vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                     max_tokens=max_new_tokens, stop=stop or None, seed=seed)
        by_prompt = {r.prompt: [o.text for o in r.outputs] for r in model.llm.generate(
            prompts, params, lora_request=model.lora_request)}
        return [by_prompt.get(p, [""] * n) for p in prompts]
    return hf_sample(model, tokenizer, prompts, n, temperature, top_p, max_new_tokens, stop, batch_size, seed)


def add_generation_arguments(ap, max_new_tokens: int, verb: str = "generate") -> None:
    """The flags every generative evaluator shares: --max_new_tokens, --use_vllm and the model/adapter flags."""
    ap.add_argument("--max_new_tokens", type=int, default=max_new_tokens,
                    help=f"default {max_new_tokens} (the original)")
    ap.add_argument("--use_vllm", action="store_true", help=f"{verb} with vLLM (falls back to Hugging Face with a "
                    "warning when vLLM is missing or the adapter is not plain LoRA)")
    add_model_arguments(ap, batch_help="prompts per generate call (HF backend)")


def run_cli(run, parser, argv=None):
    """``run(parse_eval_args(parser, argv))`` after ``eval.cli.check_save_dir`` (results already in --save_dir are
    kept unless --overwrite; a training run directory is refused); bad input -> one line, exit status 2."""
    from eval.cli import EvalInputError, check_save_dir
    from eval.cli import run_cli as one_line_errors

    def main(args_list):
        args = parse_eval_args(parser, args_list)
        try:
            check_save_dir(args.save_dir, args.overwrite)
            return run(args)
        except ValueError as err:  # the evaluators' own input checks
            raise EvalInputError(str(err)) from None

    from eval.cli import program_name

    return one_line_errors(main, argv, prog=program_name(getattr(run, "__module__", "__main__")))
