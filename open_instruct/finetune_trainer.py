"""Finetune a causal LM with MoS (or one of the paper's baselines: LoRA, VeRA, Tied-LoRA, PRoLoRA) on instruction JSONL.

The original's training entry point, same argument names and defaults (but for r, e, p and c, which default to
``MoSConfig``'s valid 8, 2, 1 and 4), on any Hugging Face causal LM:

    python open_instruct/finetune_trainer.py --model_name_or_path PATH --train_file data.jsonl \\
        --output_dir output/run --ft_mode mos --lora_r 8 --valid_param_lora_r 2 --valid_param_private_r 1 \\
        --num_chunk_per_vec 4 --max_steps 1000
    python open_instruct/finetune_trainer.py config.yaml        # or config.json: the same fields

Outputs in ``output_dir``: the plain LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``,
loadable by stock PEFT; exported exactly for every method but lora), the method's own compact checkpoint in
``<ft_mode>_adapter/`` (``mos_adapter/``, ``vera_adapter/``, ``tied_lora_adapter/``, ``prolora_adapter/``), the
tokenizer, ``train_results.json``, ``eval_results.json``, ``all_results.json``, ``metrics.json``,
``trainer_state.json``, ``run.log``, and ``completed``, written last. SIGTERM / SIGUSR1 (preemption) stop it
cleanly: the current step is finished, a complete checkpoint saved, ``preempted`` written instead of ``completed``,
exit status 75 (``open_instruct/preemption.py``); expected failures are one line and exit status 2, a full disk
included (the partial checkpoint is removed, earlier ones kept). ``--resume_from_checkpoint auto``
continues from the newest complete ``checkpoint-*`` (one cut off while being saved is skipped) with the same
index lists, optimizer state and data order. A directory holding a completed run is refused unless
``--overwrite_output_dir True``, which first removes everything the earlier run wrote there.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python open_instruct/finetune_trainer.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import transformers
from transformers import HfArgumentParser, Seq2SeqTrainingArguments, set_seed

from open_instruct.adapters import gathered_trainable_parameters, save_run_adapters
from open_instruct.errors import (
    EXIT_ERROR,
    EXIT_PREEMPTED,
    UserError,
    disk_full,
    no_space_error,
    one_line,
    one_line_usage,
    report,
)
from open_instruct.methods import add_adapter as add_method_adapter
from open_instruct.methods import config_from_args, mapping_help, method, registry
from open_instruct.model_loading import has_module, load_model, load_tokenizer
from open_instruct.mos import MoSConfig
from open_instruct.preemption import PREEMPTED, StopOnSignal, mark_preempted
from open_instruct.run_dir import (
    COMPLETED,
    UsageError,
    check_output_dir,
    check_paths_and_numbers,
    clear_output_dir,
    expected_failures,
    last_complete_checkpoint,
    remove_partial_checkpoints,
    resolve_resume,
    trainer_state,
)

logger = logging.getLogger("finetune_trainer")

_MOS_DEFAULT = {f.name: f.default for f in fields(MoSConfig)}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Base model: a local checkpoint directory or a hub id."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's."})
    token: str | None = field(default=None, metadata={"help": "Hub token for gated models (LLaMA)."})
    use_fast_tokenizer: bool = field(
        default=True, metadata={"help": "Use the fast tokenizer (falls back to fast when no slow one exists)."})
    torch_dtype: str = field(
        default="bfloat16", metadata={"help": "dtype of the base weights.", "choices": ["auto", "bfloat16",
                                                                                      "float16", "float32"]})
    use_flash_attn: bool = field(default=False, metadata={"help": "Use flash_attention_2 (needs flash-attn)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the hub."})


@dataclass
class DataTrainingArguments:
    train_file: str | None = field(default=None, metadata={"help": "Training data, .json or .jsonl "
                                      "(messages or prompt/completion format)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate training data (debug)."})
    max_eval_samples: int | None = field(
        default=1024, metadata={"help": "Held-out examples for evaluation (removed from training)."})
    max_seq_length: int = field(default=512, metadata={"help": "Truncate examples to this many tokens."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Tokenization processes."})
    train_format: str = field(default="auto", metadata={
        "help": "'instruction' (messages or prompt/completion records, loss on the replies), 'text' (continued "
                "pretraining: {\"text\": ...} documents packed into full max_seq_length blocks, loss on every "
                "token; see open_instruct/data/text.py) or 'auto' (text when the first record is a text record).",
        "choices": ["auto", "instruction", "text"]})
    padding_free: bool = field(default=False, metadata={
        "help": "Padding-free batches: a batch's examples concatenated into one row, position ids restarting per "
                "example (exact: no token attends across examples; open_instruct/data/collate.py). Launcher: PACKING=1."})
    supervised_logits: bool = field(default=True, metadata={
        "help": "Project onto the vocabulary only at positions whose next token is trained (exact: the same loss and "
                "gradients as the full projection, less work when most tokens are prompt)."})
    chat_format: str = field(default="tulu", metadata={
        "help": "How messages become text: 'tulu' (the original's <|user|>/<|assistant|>) or 'tokenizer' "
                "(the tokenizer's own chat template).", "choices": ["tulu", "tokenizer"]})
    streaming: bool = field(default=False, metadata={"help": "Not supported (kept for compatibility)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Kept for compatibility; unused."})


@dataclass
class AdapterArguments:
    """The original's ``SelfDefinedArguments``: which method (``--ft_mode``) and its hyperparameters, in the
    launcher's names; ``open_instruct.methods`` maps them onto each method's config."""

    ft_mode: str = field(default="mos", metadata={
        "help": "Adapter: one of the registered methods (open_instruct.methods): " + ", ".join(registry()) + ". "
                "The other flags map to each method as: " + mapping_help() + "."})
    use_lora: bool = field(default=True, metadata={"help": "Train an adapter (must be True)."})
    use_qlora: bool = field(default=False, metadata={"help": "4-bit NF4 base model (needs a GPU + bitsandbytes)."})
    # The rank and MoS settings default to MoSConfig's (r=8 e=2 p=1 c=4), so that the trainer run with only a model,
    # data and an output directory trains a valid adapter; the original's 64/1/1/None fail MoS's own checks.
    lora_r: int = field(default=_MOS_DEFAULT["r"], metadata={"help": "Rank r of the materialised adapter."})
    lora_alpha: float = field(default=16, metadata={"help": "Scaling: ΔW = (lora_alpha / lora_r)·B·A."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter input."})
    lora_modules: str = field(default="all", metadata={
        "help": "'all' (every linear layer but the head: q,k,v,o,gate,up,down on LLaMA) or a comma list."})
    valid_param_lora_r: int = field(default=_MOS_DEFAULT["valid_param_lora_r"], metadata={
        "help": "MoS parameter-equivalent rank e."})
    valid_param_private_r: int = field(default=_MOS_DEFAULT["valid_param_private_r"], metadata={
        "help": "MoS private ranks per layer p."})
    num_chunk_per_vec: int | None = field(default=_MOS_DEFAULT["num_chunk_per_vec"], metadata={
        "help": "MoS shards per rank vector c."})
    init_lora_A_vec_value: float = field(default=1.0, metadata={"help": "Mean of the frozen per-rank scaling."})
    init_lora_A_vec_std: float | None = field(default=0.0, metadata={"help": "Std of the per-rank scaling."})
    mos_subset_selection: bool = field(default=True, metadata={
        "help": "MoS ablation switch: False = one shared-shard draw per module type for all layers (docs/ABLATIONS.md)."})
    mos_pair_dissociation: bool = field(default=True, metadata={
        "help": "MoS ablation switch: False = B uses A's index lists (docs/ABLATIONS.md)."})
    enable_lora_vec: bool = field(default=True, metadata={"help": "Compatibility flag of the original."})
    enable_lora_rotation: bool = field(default=True, metadata={
        "help": "PRoLoRA: roll copy i of a chunk by i·shift (rotation enhancement); unused by the other methods."})
    enable_lora_bias: bool = field(default=False, metadata={"help": "Must be False (bias='none')."})
    init2zero_via_vec: bool = field(default=False, metadata={"help": "Must be False (unused by MoS)."})


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    """HF training arguments with the original launcher's defaults, plus its older flag names."""

    output_dir: str = field(default="output/run", metadata={"help": "Where outputs and checkpoints go."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    optim: str = field(default="paged_adamw_32bit", metadata={
        "help": "Optimizer; paged_* needs bitsandbytes on a GPU, else adamw_torch is used with a warning."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(default=16, metadata={"help": "Eval batch size per device."})
    max_grad_norm: float = field(default=0.3, metadata={"help": "Gradient clipping."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "LR schedule."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Warmup fraction of the steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_steps: float = field(default=1000, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept."})
    report_to: str | None = field(default="none", metadata={"help": "tensorboard, wandb, none, ..."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Allow training into an output_dir that already holds a completed run (its results are replaced)."})
    group_by_length: bool = field(default=False, metadata={"help": "Batch examples of similar length."})
    evaluation_strategy: str | None = field(default=None, metadata={"help": "Old name of eval_strategy."})
    prediction_loss_only: bool = field(default=True, metadata={
        "help": "Evaluation computes the loss only (no metric needs the logits, which would be kept for every "
                "held-out token)."})

    def __post_init__(self):
        if self.evaluation_strategy is not None:
            self.eval_strategy = self.evaluation_strategy
        if self.group_by_length:
            self.train_sampling_strategy = "group_by_length"
        if self.report_to not in (None, "none", "all") and "tensorboard" in str(self.report_to):
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                logger.warning("report_to=tensorboard but tensorboard is not installed; not reporting.")
                self.report_to = "none"
        if self.optim.startswith("paged_") or "8bit" in self.optim:
            if not (torch.cuda.is_available() and has_module("bitsandbytes")):
                logger.warning("optim=%s needs bitsandbytes on a GPU; using adamw_torch.", self.optim)
                self.optim = "adamw_torch"
        if self.gradient_checkpointing and self.gradient_checkpointing_kwargs is None:
            self.gradient_checkpointing_kwargs = {"use_reentrant": False}  # reentrant checkpointing is deprecated
        super().__post_init__()


# ---------------------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = one_line_usage(HfArgumentParser(
        (ModelArguments, DataTrainingArguments, AdapterArguments, TrainingArguments), description=__doc__,
        prog="finetune_trainer"))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        try:
            return parser.parse_dict(read_config_file(argv[0]), allow_extra_keys=False)
        except (ValueError, TypeError) as err:
            raise UsageError(f"config file {argv[0]}: {one_line(err)}") from None
    return parser.parse_args_into_dataclasses(args=argv)


def read_config_file(name: str) -> dict:
    """The fields of a JSON or YAML config file (UTF-8, a byte-order mark and Windows line ends accepted)."""
    import yaml

    path = Path(name)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    fix = "fix it or pass the flags on the command line (--help lists them)"
    try:
        text = path.read_text(encoding="utf-8-sig")
        fields = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except UnicodeDecodeError as err:
        raise UsageError(f"config file {path} is not UTF-8 text (byte offset {err.start}); {fix}") from None
    except (ValueError, yaml.YAMLError) as err:
        raise UsageError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                         f"({one_line(err)[:200]}); {fix}") from None
    if not isinstance(fields, dict):
        raise UsageError(f"config file {path} holds {type(fields).__name__}, not a mapping of flag names to values; "
                         f"{fix}")
    return fields


def validate_args(model_args, data_args, mos_args, training_args) -> None:
    if mos_args.ft_mode not in registry():
        raise UsageError(f"--ft_mode {mos_args.ft_mode!r} is not supported; choose one of {', '.join(registry())}.")
    if not mos_args.use_lora:
        raise UsageError("--use_lora False (full finetuning) is not supported; this trainer trains adapters.")
    if mos_args.enable_lora_bias or mos_args.init2zero_via_vec:
        raise UsageError("--enable_lora_bias and --init2zero_via_vec must be False for MoS (as in the original).")
    if not mos_args.enable_lora_vec:
        raise UsageError("--enable_lora_vec must be True (MoS keeps the frozen per-rank vector).")
    if data_args.streaming:
        raise UsageError("--streaming is not supported; pass a local --train_file.")
    if not data_args.train_file:
        raise UsageError("--train_file is required (a .json/.jsonl file in messages or prompt/completion format).")
    if not Path(data_args.train_file).is_file():
        raise UsageError(f"--train_file {data_args.train_file} does not exist. For SuperNI run "
                         "scripts/prepare_train_data.sh, or point TRAIN_FILE at your own JSONL.")
    check_paths_and_numbers(model_args, data_args, mos_args, training_args)
    if mos_args.use_qlora:
        if not torch.cuda.is_available():
            raise UsageError("--use_qlora True needs a CUDA GPU (4-bit bitsandbytes); pass --use_qlora False on CPU.")
        if not has_module("bitsandbytes"):
            raise UsageError("--use_qlora True needs bitsandbytes: pip install -r requirements-gpu.txt")
    method_config(mos_args, seed=0)  # the method's own checks (methods table), before anything is loaded


# ---------------------------------------------------------------------------------------------- model
def method_config(mos_args, seed: int, method: str | None = None):
    """The PEFT config of ``method`` (default ``--ft_mode``) from the launcher's flags (``open_instruct.methods``)."""
    try:
        return config_from_args(mos_args, seed, method)
    except ValueError as err:
        raise UsageError(str(err)) from err


def add_adapter(model, mos_args, seed: int):
    """The method's adapter from the launcher's flags; for mos, LoRA first and then the paper's one-liner
    ``share_lora_chunkwisely`` right after it, as the original does (``open_instruct.methods.add_adapter``)."""
    try:
        return add_method_adapter(model, mos_args, seed)
    except ValueError as err:
        raise UsageError(str(err)) from err


MoSArguments = AdapterArguments  # the name before it was named for what it configures (all five methods)


def precision_label(model, training_args) -> str:
    """How the run computes, for the results files: the base weights' dtype, plus the autocast dtype if any
    (e.g. "float32", "float32+bf16-autocast", "bfloat16+bf16-autocast")."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    weights = "nf4" if getattr(base, "is_loaded_in_4bit", False) else str(base.dtype).replace("torch.", "")
    autocast = "+bf16-autocast" if training_args.bf16 else "+fp16-autocast" if training_args.fp16 else ""
    return weights + autocast


def supervised_tokens_seen(trainer, stats: dict) -> int:
    """Targets (tokens with a loss) the whole run trained on, in expectation: optimizer steps x examples per step
    x the training set's mean targets per example (exact for text blocks, whose every example has the same count)."""
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    mean = stats["num_train_trainable_tokens"] / max(stats["num_train"], 1)
    return round(trainer.state.global_step * per_step * mean)


# ---------------------------------------------------------------------------------------------- outputs
def missed_evaluation(state: dict, training_args, eval_ds) -> bool:
    """Whether the held-out evaluation due at the step of a checkpoint (its ``trainer_state.json``, ``state``) is
    missing from its log: a run preempted on an evaluation step saves that step without evaluating it (to stop
    quickly), so its resume evaluates it first."""
    steps = training_args.eval_steps
    strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
    if eval_ds is None or strategy != "steps" or not steps or steps < 1:  # (a fraction of the run: not handled)
        return False
    step = int(state["global_step"])
    done = {e.get("step") for e in state.get("log_history", []) if "eval_loss" in e}
    return step > 0 and step % int(steps) == 0 and step not in done


def whole_run_train_loss(log_history: list[dict], resumed_from_step: int, segment_loss: float,
                         segment_steps: int) -> float:
    """Mean training loss over every step of a run resumed at ``resumed_from_step``.

    The Trainer's ``train_loss`` averages only the steps this process trained; the steps before the resume are in
    the restored ``log_history`` (each logged ``loss`` is the mean since the previous log), weighted here by the
    steps each log covers. Steps before the checkpoint that no log covers are left out of the mean."""
    total, steps, previous = segment_loss * segment_steps, segment_steps, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and previous < entry["step"] <= resumed_from_step:
            total += float(entry["loss"]) * (entry["step"] - previous)
            steps += entry["step"] - previous
            previous = entry["step"]
    return total / steps if steps else segment_loss


def save_final_outputs(trainer, model, tokenizer, mos_args, output_dir: Path) -> None:
    """Plain LoRA adapter at the top (as the original leaves it); the method's own checkpoint in <ft_mode>_adapter/.

    Every rank enters: under ZeRO-3 the trainable parameters are partitioned, and gathering them is collective.
    """
    with gathered_trainable_parameters(model):
        if trainer.is_world_process_zero():
            save_run_adapters(model, output_dir, mos_args.ft_mode)
            tokenizer.save_pretrained(output_dir)


def preempted(trainer, stop: StopOnSignal, output_dir: Path) -> int:
    """After a stop by SIGTERM / SIGUSR1: the ``preempted`` marker, one line saying how to resume, status 75."""
    last, _ = last_complete_checkpoint(output_dir)
    if trainer.is_world_process_zero():
        mark_preempted(output_dir, stop, last.name if last else None)
        logger.warning("preempted at step %d of %d; checkpoint: %s", stop.stopped_at, trainer.state.max_steps, last)
        print(f"finetune_trainer: preempted at step {stop.stopped_at} of {trainer.state.max_steps}: {last} is saved "
              f"and {output_dir / PREEMPTED} marks the run; run the same command with --resume_from_checkpoint auto "
              "to continue", file=sys.stderr, flush=True)
    return EXIT_PREEMPTED


def checkpoint_disk_full(trainer, output_dir: Path) -> UserError:
    """A checkpoint hit a full disk: remove its partial files (main process), keep the earlier complete ones."""
    removed = remove_partial_checkpoints(output_dir) if trainer.is_world_process_zero() else []
    last, _ = last_complete_checkpoint(output_dir)
    what = f"checkpoint-{trainer.state.global_step}"
    after = (f"its partial files ({', '.join(removed)}) were removed" if removed else "nothing partial is left")
    after += (f"; the last complete checkpoint, {last.name}, is kept: --resume_from_checkpoint auto continues from it"
              if last else "; no earlier checkpoint exists")
    return no_space_error(output_dir, what, after)


def final_outputs_disk_full(trainer, output_dir: Path) -> UserError:
    """The final adapter / tokenizer hit a full disk: remove what this attempt wrote of them (main process)."""
    from open_instruct.run_dir import remove_final_outputs

    removed = remove_final_outputs(output_dir) if trainer.is_world_process_zero() else []
    last, _ = last_complete_checkpoint(output_dir)
    after = (f"the partial files ({', '.join(removed)}) were removed" if removed else "nothing partial is left")
    after += f"; the run is not marked completed{f' and {last.name} is kept' if last else ''}"
    return no_space_error(output_dir, "the final adapter", after)


class RunLog(logging.FileHandler):
    """``run.log``; when it cannot be written (a full disk) it stops, instead of printing a traceback per record."""

    def handleError(self, record):  # noqa: N802  (logging's name)
        logging.getLogger().removeHandler(self)
        self.close()
        print(f"finetune_trainer: warning: cannot write {self.baseFilename} any more (a full disk?); logging to "
              "stdout only", file=sys.stderr)


def setup_logging(training_args) -> None:
    """Log to stdout and (main process) output_dir/run.log until main() returns; other handlers are kept."""
    out = Path(training_args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stdout)]
    if training_args.process_index == 0:
        handlers.append(RunLog(out / "run.log"))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    _RUN_LOG_HANDLERS[:] = handlers
    transformers.utils.logging.set_verbosity_warning()


_RUN_LOG_HANDLERS: list[logging.Handler] = []


def _close_run_logging() -> None:
    """Detach this run's handlers, so that nothing later (another run in the same process) writes to its run.log."""
    for handler in _RUN_LOG_HANDLERS:
        logging.getLogger().removeHandler(handler)
        handler.close()
    _RUN_LOG_HANDLERS.clear()


def main(argv: list[str] | None = None, callbacks=None) -> int:
    try:
        model_args, data_args, mos_args, training_args = parse_args(argv)
        validate_args(model_args, data_args, mos_args, training_args)
        resume = resolve_resume(training_args)
        check_output_dir(training_args, resume)
        clear_output_dir(training_args)
        return train(model_args, data_args, mos_args, training_args, resume, callbacks)
    except UserError as err:
        report("finetune_trainer", err)
        return EXIT_ERROR
    finally:
        _close_run_logging()


def train(model_args, data_args, mos_args, training_args, resume, callbacks=None) -> int:
    """Train (see the module doc); returns 0, or 75 when a SIGTERM / SIGUSR1 stopped it after a checkpoint."""
    stop = StopOnSignal().install()  # from now on a preemption signal ends the run cleanly
    try:
        status = _train(model_args, data_args, mos_args, training_args, resume, [*(callbacks or []), stop], stop)
    finally:
        stop.uninstall()
    leave_process_group()
    return status


def leave_process_group() -> None:
    """Several processes: wait until the main one has written every output, then close the process group, so that
    no rank exits with the group's threads still running (seen to abort a rank on another machine at exit)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _train(model_args, data_args, mos_args, training_args, resume, callbacks, stop) -> int:
    from transformers import Trainer

    from open_instruct.data import prepare_datasets
    from open_instruct.data.collate import SupervisedLogits, build_collator
    from open_instruct.data.text import is_text_file, prepare_text_datasets

    setup_logging(training_args)
    # Set up the device/process group now: under DeepSpeed ZeRO-3, from_pretrained builds the model inside
    # zero.Init, which needs the distributed environment (world size) before the model is loaded.
    logger.info("device %s, process %d of %d", training_args.device, training_args.process_index,
                training_args.world_size)
    if training_args.deepspeed and training_args.world_size > 1:
        import deepspeed

        deepspeed.init_distributed(dist_backend=None if torch.cuda.is_available() else "gloo")
    output_dir = Path(training_args.output_dir)
    (output_dir / COMPLETED).unlink(missing_ok=True)  # a run in progress is never marked complete
    (output_dir / PREEMPTED).unlink(missing_ok=True)  # nor preempted
    set_seed(training_args.seed)
    entry = method(mos_args.ft_mode)
    logger.info("ft_mode=%s (%s) %s seed=%d", entry.name, entry.label,
                entry.describe(method_config(mos_args, training_args.seed)), training_args.seed)

    tokenizer = expected_failures(
        load_tokenizer, "cannot load the tokenizer", model_args.tokenizer_name or model_args.model_name_or_path,
        padding_side="right", use_fast=model_args.use_fast_tokenizer, notice=logger.warning,
        flag="--tokenizer_name" if model_args.tokenizer_name else "--model_name_or_path", token=model_args.token,
        trust_remote_code=model_args.trust_remote_code)
    text_mode = data_args.train_format == "text" or (data_args.train_format == "auto"
                                                     and is_text_file(data_args.train_file))
    do_eval = bool(training_args.do_eval and data_args.max_eval_samples)
    with training_args.main_process_first(desc="tokenizing"):
        if text_mode:
            logger.info("training on plain text (continued pretraining): %s", data_args.train_file)
            if training_args.train_sampling_strategy == "group_by_length":  # every block has the same length
                training_args.train_sampling_strategy = "random"
            train_ds, eval_ds, stats = expected_failures(
                prepare_text_datasets, "", data_args.train_file, tokenizer, data_args.max_seq_length,
                max_eval_samples=data_args.max_eval_samples, seed=42, do_eval=do_eval,
                max_train_samples=data_args.max_train_samples)
        else:
            train_ds, eval_ds, stats = expected_failures(
                prepare_datasets, "", data_args.train_file, tokenizer, data_args.max_seq_length,
                max_eval_samples=data_args.max_eval_samples, seed=42, do_eval=do_eval,
                num_proc=data_args.preprocessing_num_workers or 1, max_train_samples=data_args.max_train_samples,
                chat_format=data_args.chat_format, add_length_column=training_args.group_by_length,
                eval_fraction_if_too_few=0.1)
    logger.info("data: %s", json.dumps(stats))

    model = expected_failures(load_model, f"cannot load the model {model_args.model_name_or_path}", model_args,
                               mos_args, training_args)
    model = add_adapter(model, mos_args, training_args.seed)
    n_trainable = entry.trainable(model)
    logger.info("trainable parameters: %s", f"{n_trainable:,}")
    if mos_args.ft_mode == "mos":
        from open_instruct.mos import mos_report

        logger.info("MoS: %s", mos_report(model))

    collator = build_collator(tokenizer, model, padding_free=data_args.padding_free,
                              supervised_logits=data_args.supervised_logits and training_args.n_gpu <= 1)
    batching = {"precision": precision_label(model, training_args), "padding_free": data_args.padding_free,
                "supervised_logits": isinstance(collator, SupervisedLogits), "text_mode": text_mode}
    logger.info("batches: %s", json.dumps(batching))
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=collator, callbacks=callbacks,
    )
    # read now: by the end of training, save_total_limit may have rotated the resumed-from checkpoint away
    state = trainer_state(resume) if resume else None
    resumed_from_step = state["global_step"] if state else 0
    if state and missed_evaluation(state, training_args, eval_ds):
        training_args.eval_on_start = True  # the Trainer evaluates at the resumed step before the next one
    stop.trainer = trainer
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except Exception as err:
        if not disk_full(err, output_dir):
            raise
        raise checkpoint_disk_full(trainer, output_dir) from None
    if stop.preempted:
        return preempted(trainer, stop, output_dir)
    if trainer.is_world_process_zero():  # save_metrics merges into these: start them from this run alone
        for stale in ("train_results.json", "eval_results.json", "all_results.json"):
            (output_dir / stale).unlink(missing_ok=True)
    metrics = dict(result.metrics)
    if resumed_from_step:  # the Trainer's train_loss covers this process's steps only: make it the whole run's
        metrics["train_loss_this_segment"] = metrics["train_loss"]
        metrics["train_loss"] = whole_run_train_loss(trainer.state.log_history, resumed_from_step,
                                                     metrics["train_loss"], trainer.state.global_step - resumed_from_step)
    # train_runtime covers this process only: with resumed_from_step a reader can tell a resumed run's time apart
    metrics.update(trainable_params=n_trainable, train_samples=len(train_ds),
                   dropped_examples=stats["num_dropped_no_trainable_tokens"], resumed_from_step=resumed_from_step,
                   train_trainable_tokens=stats["num_train_trainable_tokens"],
                   supervised_tokens_seen=supervised_tokens_seen(trainer, stats), **batching)
    try:
        save_final_outputs(trainer, model, tokenizer, mos_args, output_dir)
    except Exception as err:
        if not disk_full(err, output_dir):
            raise
        raise final_outputs_disk_full(trainer, output_dir) from None
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    all_metrics = {"run_name": training_args.run_name or output_dir.name, **metrics}
    if eval_ds is not None:
        eval_metrics = trainer.evaluate()
        eval_metrics["eval_samples"] = len(eval_ds)
        if "eval_loss" in eval_metrics:
            eval_metrics["perplexity"] = math.exp(min(eval_metrics["eval_loss"], 50))
        trainer.save_metrics("eval", eval_metrics)
        all_metrics.update(eval_metrics)
    if trainer.is_world_process_zero():
        (output_dir / "metrics.json").write_text(json.dumps(all_metrics, indent=2))
        (output_dir / COMPLETED).touch()  # last: its presence means every output above exists
    return 0


if __name__ == "__main__":
    sys.exit(main())
