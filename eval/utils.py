"""Shared evaluation helpers: load a model (plus an optional adapter), score next tokens, generate text.

Two backends:

* Hugging Face (default, CPU or GPU): ``load_hf_lm_and_tokenizer`` loads the base model, then an adapter
  directory with ``peft.PeftModel.from_pretrained`` -- MoS or plain LoRA, no merge step -- and puts it in
  eval mode. ``get_next_word_predictions`` and ``generate_completions`` run batched, left padded, under
  ``torch.inference_mode`` with a progress bar.
* vLLM (``--use_vllm``, optional and imported lazily): ``load_vllm_model`` serves the base model with the
  adapter as a ``LoRARequest`` (vLLM only knows plain LoRA, so a MoS adapter must first be exported to a
  dense LoRA adapter). When vLLM is not installed, or the adapter is not plain LoRA, it returns ``None``
  after a warning and the callers fall back to the Hugging Face backend, which gives the same greedy
  outputs, only slower.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

DATA_HINT = "Download the evaluation data with `bash scripts/prepare_eval_data.sh` (or point --data_dir at it)."


def loading(what: str, name: str, load, *args, **kwargs):
    """``load(name, ...)`` of a model or tokenizer, each failure one line (``open_instruct.run_dir.load_checked``)."""
    from open_instruct.run_dir import load_checked

    return load_checked(what, name, load, *args, **kwargs)


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise FileNotFoundError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected {what} at {path}, but there is no such file. {DATA_HINT}")
    return path


# ----------------------------------------------------------------------------------------------- loading

def load_tokenizer(name_or_path: str, use_fast: bool = True, padding_side: str = "left"):
    """Load a tokenizer for batched evaluation: left padding, and the training's pad-token policy
    (``open_instruct.model_loading.load_tokenizer``: its pad token, else unk, else eos).

    ``use_fast=False`` (``--use_slow_tokenizer``) asks for the slow tokenizer; when the checkpoint has no slow
    version the fast one is used and a notice is printed.
    """
    from open_instruct.model_loading import load_tokenizer as load

    return load(name_or_path, padding_side=padding_side, use_fast=use_fast)


def _quantization_kwargs(load_in_8bit: bool) -> dict:
    """8-bit loading needs bitsandbytes and a CUDA GPU. On CPU: warn and load in full precision."""
    if not load_in_8bit:
        return {}
    if not torch.cuda.is_available():
        warnings.warn("--load_in_8bit needs a CUDA GPU (bitsandbytes); no GPU here, so the model is loaded "
                      "without quantization.", stacklevel=3)
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError("--load_in_8bit needs the bitsandbytes package: `pip install bitsandbytes`, or drop "
                          "--load_in_8bit.") from err
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}


def load_hf_lm(model_name_or_path: str, adapter_path: str | None = None, load_in_8bit: bool = False,
               dtype="auto", device_map: str | None = "auto"):
    """Load a causal LM for evaluation, with an optional PEFT adapter (MoS or LoRA), in eval mode.

    ``device_map="auto"`` spreads the model over the visible GPUs and means plain CPU when there is none;
    ``"cpu"`` forces the CPU. The adapter is attached with ``PeftModel.from_pretrained`` and not merged.
    """
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype, **_quantization_kwargs(load_in_8bit)}
    if device_map == "auto" and not torch.cuda.is_available():
        device_map = None
    if device_map is not None and device_map != "cpu":
        kwargs["device_map"] = device_map
    elif "quantization_config" in kwargs:
        kwargs["device_map"] = "auto"
    model = loading("model", model_name_or_path, AutoModelForCausalLM.from_pretrained, **kwargs)
    if adapter_path:
        model = attach_adapter(model, adapter_path)
    model.eval()
    return model


def load_hf_lm_and_tokenizer(model_name_or_path: str, tokenizer_name_or_path: str | None = None,
                             adapter_path: str | None = None, load_in_8bit: bool = False, dtype="auto",
                             device_map: str | None = "auto", use_fast_tokenizer: bool = True,
                             padding_side: str = "left"):
    """``(load_hf_lm(...), load_tokenizer(...))``; the tokenizer defaults to the model's."""
    model = load_hf_lm(model_name_or_path, adapter_path, load_in_8bit, dtype, device_map)
    tokenizer = load_tokenizer(tokenizer_name_or_path or model_name_or_path, use_fast=use_fast_tokenizer,
                               padding_side=padding_side)
    return model, tokenizer


def read_adapter_config(adapter_path: str | Path) -> dict:
    """The adapter's ``adapter_config.json``, with a clear error when the directory is not an adapter."""
    config = Path(adapter_path) / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"--adapter_path {adapter_path}: expected an adapter directory containing "
                                f"adapter_config.json (a MoS or LoRA adapter saved by PEFT), found no {config}.")
    from open_instruct.adapters import read_adapter_config as read_checked

    return read_checked(adapter_path)  # AdapterError (a ValueError) naming the file when it is not JSON


def attach_adapter(model, adapter_path: str | Path):
    """Wrap ``model`` with the adapter saved in ``adapter_path`` (no merge): MoS, Tied-LoRA, PRoLoRA, VeRA or LoRA.

    ``open_instruct.adapters.attach_adapter`` checks that it fits first: a damaged config or weights file, or an
    adapter of a different model, is an ``AdapterError`` (a ``ValueError``) naming the file and the fix.
    """
    peft_type = str(read_adapter_config(adapter_path).get("peft_type", "")).upper()
    try:
        import open_instruct.baselines  # noqa: F401  (with open_instruct.mos: registers the MOS, TIED_LORA and
        import open_instruct.mos  # noqa: F401        PROLORA PEFT types)
        from open_instruct.adapters import attach_adapter as attach_checked
    except ImportError as err:  # never hidden: a MoS / Tied-LoRA / PRoLoRA adapter cannot load without them
        if peft_type not in ("LORA", "VERA"):
            raise ImportError(f"--adapter_path {adapter_path} is a {peft_type} adapter, which needs this project's "
                              f"open_instruct package, but importing it failed: {err}. Run from the repository root "
                              "(or pip install -e .) and check that error.") from err
        warnings.warn(f"importing open_instruct.mos / open_instruct.baselines failed ({err}); loading the "
                      f"{peft_type} adapter with stock PEFT.", stacklevel=2)
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(adapter_path), is_trainable=False)
    return attach_checked(model, adapter_path, is_trainable=False)


def adapter_save_dirs(adapter_paths: list[str], save_dirs: list[str]) -> list[Path]:
    """One results directory per adapter: ``--save_dir`` given once per adapter, or once for all of them (then
    ``<save_dir>/<adapter directory name>`` each; a single adapter keeps ``<save_dir>`` itself)."""
    if len(adapter_paths) <= 1 and len(save_dirs) == 1:
        return [Path(save_dirs[0])]
    if len(save_dirs) == len(adapter_paths):
        dirs = [Path(d) for d in save_dirs]
    elif len(save_dirs) == 1:
        dirs = [Path(save_dirs[0]) / Path(a).resolve().name for a in adapter_paths]
    else:
        raise ValueError(f"--save_dir: give one directory, or one per adapter ({len(adapter_paths)}), "
                         f"not {len(save_dirs)}.")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise ValueError("--save_dir: two adapters would write into the same results directory "
                         f"({', '.join(map(str, dirs))}); give one --save_dir per adapter.")
    return dirs


def _load_another(peft_model, adapter_path, name: str) -> None:
    try:
        from open_instruct.adapters import attach_adapter as attach_checked
    except ImportError:  # stock PEFT only (attach_adapter warned already): LoRA / VeRA, unchecked
        peft_model.load_adapter(str(adapter_path), adapter_name=name, is_trainable=False)
        return
    attach_checked(peft_model, adapter_path, adapter_name=name)


def iter_adapter_models(model, adapter_paths: list[str]):
    """Yield ``(adapter_path, model with only that adapter active)`` for each adapter, on one base model load.

    Adapters of the same PEFT type are swapped in place (``load_adapter``, ``set_adapter``, then
    ``delete_adapter`` of the previous one), so one adapter is resident at a time; a different type unloads the
    previous adapter (no merge) and attaches the next. The base weights are never modified, so each adapter
    scores exactly as in a run of its own.
    """
    peft_model, current, current_type = None, None, None
    for i, path in enumerate(adapter_paths):
        peft_type = str(read_adapter_config(path).get("peft_type", "")).upper()
        if peft_model is not None and peft_type == current_type:
            name = f"adapter_{i}"
            _load_another(peft_model, path, name)  # checked like the first: same model, matching weights
            peft_model.set_adapter(name)
            peft_model.delete_adapter(current)
        else:
            if peft_model is not None:
                model = peft_model.unload()
            peft_model, name = attach_adapter(model, path), "default"
        current, current_type = name, peft_type
        peft_model.eval()
        yield path, peft_model


# ----------------------------------------------------------------------------------------------- running

def input_device(model) -> torch.device:
    """The device the inputs go to: that of the input embeddings (the first shard under a device map)."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


def accepts_argument(model, name: str) -> bool:
    """Whether the (base) model's ``forward`` takes ``name`` (e.g. ``position_ids``, ``logits_to_keep``)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def prefix_plan(model, tokenizer, prompts: list[str], add_special_tokens: bool = True, enabled: bool = True):
    """How to run ``prompts``: ``[(PrefixCache or None, prompt indices, their remaining tokens or None), ...]``.

    Consecutive prompts that share a long enough token prefix (a task's few-shot exemplars) form a group whose
    prefix is computed once (eval/prefix_cache.py); the other prompts go, together, through the plain path (cache
    None). Without ``enabled``, or for a model that takes no KV cache, everything takes the plain path."""
    from eval.prefix_cache import MIN_SHARED_TOKENS, PrefixCache, cache_argument, shared_prefix_length

    plain = [(None, list(range(len(prompts))), None)]
    if not enabled or len(prompts) < 2 or cache_argument(model) is None or not accepts_argument(model, "position_ids"):
        return plain
    ids = tokenizer(prompts, add_special_tokens=add_special_tokens).input_ids
    groups: list[tuple[list[int], int]] = []  # (indices, their common prefix length: min of each with the first)
    for i in range(len(ids)):
        if groups:
            group, now = groups[-1]
            joined = shared_prefix_length([ids[group[0]], ids[i]])
            if joined >= MIN_SHARED_TOKENS and (len(group) == 1 or joined >= now // 2):
                groups[-1] = (group + [i], min(now, joined))
                continue
        groups.append(([i], len(ids[i]) - 1))
    plan, alone = [], []
    for group, n in groups:
        if len(group) < 2 or n < MIN_SHARED_TOKENS:
            alone += group
            continue
        cache = PrefixCache(model, [ids[group[0]][:n]], tokenizer.pad_token_id, input_device(model))
        plan.append((cache, group, [ids[j][n:] for j in group]))
    return plan + ([(None, alone, None)] if alone else [])


def _batches(plan, batch_size: int):
    """``(cache, indices, suffixes)`` batches of at most ``batch_size`` rows, each within one group of ``plan``."""
    for cache, indices, suffixes in plan:
        for start in range(0, len(indices), batch_size):
            yield cache, indices[start:start + batch_size], suffixes[start:start + batch_size] if suffixes else None


@torch.inference_mode()
def get_next_word_predictions(model, tokenizer, prompts: list[str], candidate_token_ids: list[int] | None = None,
                              batch_size: int = 1, add_special_tokens: bool = True, disable_tqdm: bool = False,
                              desc: str = "Scoring", shared_prefix: bool = True):
    """Next-token probabilities at the last position of each prompt, batched with left padding.

    The softmax is over the whole vocabulary; with ``candidate_token_ids`` the returned probabilities are
    those columns (not renormalised) and the prediction is the argmax among them, as in open-instruct.
    With ``shared_prefix`` a common token prefix of consecutive prompts (a subject's few-shot examples) is computed
    once and its KV cache reused for every batch (``eval.prefix_cache``; the same numbers to float rounding).
    Returns ``(prediction_indices, probabilities)`` as Python lists.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("get_next_word_predictions needs tokenizer.padding_side == 'left' (see load_tokenizer).")
    device = input_device(model)
    pass_positions = accepts_argument(model, "position_ids")
    plan = prefix_plan(model, tokenizer, prompts, add_special_tokens, shared_prefix)
    predictions, probs = [None] * len(prompts), [None] * len(prompts)
    with tqdm(total=len(prompts), desc=desc, disable=disable_tqdm, leave=False) as bar:
        for cached, indices, suffixes in _batches(plan, batch_size):
            if cached is not None:
                logits = cached.forward([0] * len(indices), suffixes, tokenizer.pad_token_id, logits_to_keep=1)[0]
            else:
                batch = tokenizer([prompts[i] for i in indices], padding="longest", return_tensors="pt",
                                  add_special_tokens=add_special_tokens).to(device)
                kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
                if pass_positions:
                    kwargs["position_ids"] = (batch.attention_mask.long().cumsum(-1) - 1).clamp(min=0)
                logits = model(**kwargs).logits
            batch_probs = torch.softmax(logits[:, -1, :].float(), dim=-1)
            if candidate_token_ids is not None:
                batch_probs = batch_probs[:, candidate_token_ids]
            for i, pred, row in zip(indices, batch_probs.argmax(dim=-1).tolist(), batch_probs.tolist()):
                predictions[i], probs[i] = pred, row
            bar.update(len(indices))
    return predictions, probs


def _cut_at_stop(text: str, stop_sequences) -> str:
    for stop in stop_sequences or ():
        index = text.find(stop)
        if index >= 0:
            text = text[:index]
    return text


@torch.inference_mode()
def generate_completions(model, tokenizer, prompts: list[str], batch_size: int = 1, max_new_tokens: int = 50,
                         stop_sequences: list[str] | None = None, add_special_tokens: bool = True,
                         disable_tqdm: bool = False, desc: str = "Generating", shared_prefix: bool = True) -> list[str]:
    """Greedy generation, batched with left padding; returns only the new text of each prompt, stripped.

    Generation of a sequence stops at eos or at any of ``stop_sequences``, and the text is cut before the
    first stop sequence (like vLLM's ``stop``). With ``shared_prefix`` the prompts' common token prefix (the
    few-shot exemplars) is computed once and its KV cache handed to every ``generate`` call (eval.prefix_cache).
    """
    if tokenizer.padding_side != "left":
        raise ValueError("generate_completions needs tokenizer.padding_side == 'left' (see load_tokenizer).")
    device = input_device(model)
    plan = prefix_plan(model, tokenizer, prompts, add_special_tokens, shared_prefix)
    outputs: list[str] = [""] * len(prompts)
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    if stop_sequences:
        kwargs.update(stop_strings=list(stop_sequences), tokenizer=tokenizer)
    bar = tqdm(total=len(prompts), desc=desc, disable=disable_tqdm, leave=False)
    for cached, indices, suffixes in _batches(plan, batch_size):
        if cached is not None:
            inputs = cached.generate_inputs([0] * len(indices), suffixes, tokenizer.pad_token_id)
        else:
            batch = tokenizer([prompts[i] for i in indices], padding="longest", return_tensors="pt",
                              add_special_tokens=add_special_tokens).to(device)
            inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        generated = model.generate(**inputs, **kwargs)
        new_tokens = generated[:, inputs["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        for i, text in zip(indices, texts):
            outputs[i] = _cut_at_stop(text, stop_sequences).strip()
        bar.update(len(indices))
    bar.close()
    return outputs


# ----------------------------------------------------------------------------------------------- command line

def add_model_arguments(ap, batch_help: str = "prompts per forward pass", many_adapters: bool = False) -> None:
    """The flags the evaluators share: model, tokenizer, adapter, batching, 8-bit, chat format.

    ``many_adapters=True``: ``--adapter_path`` takes several directories (a list; see ``iter_adapter_models``).
    ``--model_name_or_path`` is required unless an adapter's run.json names it, or the parser's defaults say
    ``model_optional=True`` (an evaluator that can work without a model)."""
    ap.add_argument("--model_name_or_path", default=None, help="model directory or hub name (the base model "
                    "when --adapter_path is given; default then: the base model recorded in the run.json of the "
                    "adapter's run directory)")
    ap.add_argument("--tokenizer_name_or_path", default=None, help="tokenizer (default: --model_name_or_path)")
    ap.add_argument("--adapter_path", default=[] if many_adapters else None, nargs="+" if many_adapters else None,
                    help="an adapter directory (adapter_config.json): MoS, Tied-LoRA, PRoLoRA or plain LoRA, "
                    "loaded on the base model with PEFT without merging (vLLM: plain LoRA only)"
                    + ("; several directories are scored one after another on one base model load, each into "
                       "its own results directory (see --save_dir)" if many_adapters else ""))
    ap.add_argument("--use_slow_tokenizer", action="store_true", help="ask for the slow tokenizer (the fast one "
                    "is used, with a notice, when there is no slow version)")
    ap.add_argument("--eval_batch_size", type=int, default=1, help=batch_help)
    ap.add_argument("--load_in_8bit", action="store_true", help="8-bit weights (bitsandbytes, CUDA only; on a "
                    "machine without a GPU a warning is printed and the model is loaded unquantized)")
    ap.add_argument("--torch_dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="dtype of the model weights (default: the checkpoint's); bfloat16 is fast on a GPU and on "
                    "CPUs with native bf16 (avx512_bf16/AMX), much slower than float32 on CPUs without it")
    ap.add_argument("--no_shared_prefix", action="store_true", help="recompute prompts' common prefix (few-shot "
                    "examples) for every prompt instead of reusing its KV cache (the numbers are the same)")
    ap.add_argument("--use_chat_format", action="store_true", help="wrap each prompt in the chat format")
    ap.add_argument("--chat_formatting_function", default="eval.templates.create_prompt_with_tulu_chat_format",
                    help="dotted path of the formatting function, or a short name: tulu, tokenizer "
                    "(the tokenizer's own chat template)")


def model_dtype(args):
    """The ``--torch_dtype`` of an evaluator's arguments as ``from_pretrained`` takes it ("auto" or a torch dtype)."""
    name = getattr(args, "torch_dtype", "auto")
    return name if name == "auto" else getattr(torch, name)


def shared_prefix(args) -> bool:
    return not getattr(args, "no_shared_prefix", False)


def chat_format(args) -> str | None:
    """The evaluators' ``chat_format``: ``--chat_formatting_function`` with ``--use_chat_format``, else None."""
    return args.chat_formatting_function if args.use_chat_format else None


def parse_eval_args(parser, argv=None):
    from eval.cli import EvalInputError
    from open_instruct.errors import one_line_usage

    args = one_line_usage(parser).parse_args(argv)
    if args.eval_batch_size < 1:
        raise EvalInputError(f"--eval_batch_size must be at least 1, got {args.eval_batch_size}.")
    if args.model_name_or_path is None and (args.adapter_path or not getattr(args, "model_optional", False)):
        args.model_name_or_path = recorded_base_model(args.adapter_path)
    return args


def recorded_base_model(adapter_paths) -> str:
    """The base model that the ``run.json`` of the adapters' run directories records (one for all of them), for an
    evaluator called without ``--model_name_or_path``; ``EvalInputError`` when there is none to take."""
    from eval.cli import EvalInputError
    from open_instruct.run_spec import run_spec_of_adapter

    paths = [adapter_paths] if isinstance(adapter_paths, str) else list(adapter_paths or [])
    if not paths:
        raise EvalInputError("--model_name_or_path is required (the model to evaluate, or the base model of "
                             "--adapter_path).")
    models = {}
    for path in paths:
        found = run_spec_of_adapter(path)
        if found is None:
            raise EvalInputError(f"--model_name_or_path is required: {path} has no run.json (in it or its parent "
                                 "folder) that records its base model; pass the base model the adapter was trained "
                                 "on.")
        models.setdefault(found[1].model, []).append(str(found[0]))
    if len(models) > 1:
        detail = "; ".join(f"{model} ({', '.join(files)})" for model, files in models.items())
        raise EvalInputError(f"--adapter_path: the adapters were trained on different base models ({detail}); "
                             "evaluate each base model's adapters in their own call, or pass --model_name_or_path.")
    model, files = next(iter(models.items()))
    print(f"[eval] base model {model} (recorded in {files[0]})", flush=True)
    return model


# ----------------------------------------------------------------------------------------------- vLLM

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class VllmEngine(NamedTuple):
    """A started vLLM engine and its adapter (``None`` without one): what the generative evaluators take as their
    model in place of a Hugging Face model."""

    llm: object
    lora_request: object = None


def load_vllm_model(model_name_or_path: str, tokenizer_name_or_path: str | None = None,
                    adapter_path: str | None = None, use_slow_tokenizer: bool = False):
    """Start a vLLM engine, or return ``None`` (after a warning) so that the caller falls back to HF.

    Returns a ``VllmEngine(llm, lora_request)``; ``lora_request`` is ``None`` without an adapter. The adapter must be a
    plain LoRA adapter (``peft_type`` LORA); a MoS adapter must be exported to one first.
    """
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError:
        warnings.warn("--use_vllm: vLLM is not installed (`pip install vllm`); falling back to Hugging Face "
                      "generation, which gives the same greedy outputs, only slower.", stacklevel=2)
        return None
    lora_rank = None
    if adapter_path:
        config = read_adapter_config(adapter_path)
        if str(config.get("peft_type", "")).upper() != "LORA":
            warnings.warn(f"--use_vllm: the adapter in {adapter_path} has peft_type {config.get('peft_type')!r}; "
                          "vLLM serves only plain LoRA adapters. Export the MoS adapter to a dense LoRA adapter "
                          "(python -m open_instruct.export) to use vLLM; falling back to Hugging Face generation.",
                          stacklevel=2)
            return None
        rank = int(config.get("r", 8))
        lora_rank = next((size for size in VLLM_LORA_RANKS if size >= rank), rank)
    engine_kwargs = dict(model=model_name_or_path, tokenizer=tokenizer_name_or_path or model_name_or_path,
                         tokenizer_mode="slow" if use_slow_tokenizer else "auto",
                         tensor_parallel_size=max(torch.cuda.device_count(), 1), gpu_memory_utilization=0.8)
    if lora_rank is not None:
        engine_kwargs.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=1)
    llm = vllm.LLM(**engine_kwargs)
    lora_request = LoRARequest("adapter", 1, str(Path(adapter_path).resolve())) if adapter_path else None
    return VllmEngine(llm, lora_request)


def generate_with_vllm(llm, prompts: list[str], max_tokens: int = 50, stop_sequences: list[str] | None = None,
                       lora_request=None) -> list[str]:
    """Greedy vLLM generation; outputs are mapped back to their prompts and stripped ("" if one is missing)."""
    import vllm

    params = vllm.SamplingParams(temperature=0, max_tokens=max_tokens, stop=stop_sequences or None)
    results = llm.generate(prompts, params, lora_request=lora_request)
    by_prompt = {result.prompt: result.outputs[0].text for result in results}
    return [by_prompt.get(prompt, "").strip() for prompt in prompts]
