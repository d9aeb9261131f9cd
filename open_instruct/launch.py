"""The launchers' arguments and environment overrides turned into a checked :class:`RunSpec` and the commands to run.

``scripts/launch.sh`` (sourced by the top-level ``ft_*.sh`` launchers) keeps the process control (running the
trainer and the evaluators in the background, passing signals on, the lock, the resume hints) and asks this module
for everything else, in one call::

    eval "$("$PYTHON" -m open_instruct.launch spec --launcher ft_llama2_7b_superni_mmlu.sh --task superni ... -- "$@")"

``spec`` checks the ten positional arguments and every environment override (one line naming the value and the
fix, exit status 2), finds the device, checks or creates the run directory (a resume must repeat the arguments in
its ``run.json``; a new directory is created exclusively and gets its ``run.json`` before training), and prints
shell assignments: the run directory, the training command and the task's evaluations. With the wrong number of
arguments it prints the launcher's usage instead. The tasks (what each trains on and how it is evaluated) are
:data:`TASKS`; the methods come from the registry (``open_instruct.methods``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from open_instruct.errors import UserError
from open_instruct.methods import registry
from open_instruct.run_spec import (
    LEGACY_SIGNATURE,
    POSITIONAL,
    DataSpec,
    Evaluation,
    MethodSpec,
    RunSpec,
    TrainingSpec,
    read_run_spec,
    write_run_spec,
)

INT = re.compile(r"[0-9]+")
NUMBER = re.compile(r"[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?")
CHAT_FUNCTIONS = {"tulu": "eval.templates.create_prompt_with_tulu_chat_format",
                  "tokenizer": "eval.templates.create_prompt_with_tokenizer_chat_template"}


# ----------------------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """What a launcher trains on and how its run is evaluated (paths of ``evaluations`` are below EVAL_DATA_DIR)."""

    dataset: str  # data/processed/<dataset>/<dataset>_data.jsonl, made by scripts/prepare_train_data.sh <dataset>
    eval_data: str  # for the usage text
    description: str
    extra_env: str  # the variables with more evaluation flags, for the usage text
    inputs: tuple[str, ...]  # what the evaluations read, checked before training
    evaluations: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], bool, str], ...]
    # (name, save dir, module, flags before --save_dir, flags after it, takes --use_vllm, the variable with more
    # flags); "{data}" stands for EVAL_DATA_DIR


TASKS = {
    "superni": Task(
        "super_ni", "mmlu/ and tydiqa/",
        "Trains on SuperNI, then evaluates MMLU (0-shot) and TyDiQA (1-shot) in <run dir>/mmlu_results and "
        "tydiqa_results.", 'MMLU_ARGS="..." / TYDIQA_ARGS="..." (more eval flags)',
        ("mmlu/test", "tydiqa/tydiqa-goldp-v1.1-dev.json"),
        (("MMLU", "mmlu_results", "eval.mmlu.run_eval", ("--ntrain", "0", "--data_dir", "{data}/mmlu"), (), False,
          "MMLU_ARGS"),
         ("TyDiQA", "tydiqa_results", "eval.tydiqa.run_eval", ("--data_dir", "{data}/tydiqa"),
          ("--n_shot", "1", "--max_context_length", "512"), True, "TYDIQA_ARGS"))),
    "flan_v2": Task(
        "flan_v2", "bbh/",
        "Trains on Flan v2, then evaluates BBH with and without chain of thought in <run dir>/bbh_results/"
        "{cot,no_cot}.", 'BBH_ARGS="..." (more eval flags)', ("bbh",),
        (("BBH (no CoT)", "bbh_results/no_cot", "eval.bbh.run_eval", ("--data_dir", "{data}/bbh"), ("--no_cot",),
          True, "BBH_ARGS"),
         ("BBH (CoT)", "bbh_results/cot", "eval.bbh.run_eval", ("--data_dir", "{data}/bbh"), (), True, "BBH_ARGS"))),
    "cot": Task(
        "cot", "gsm/",
        "Trains on the CoT split of Flan v2, then evaluates GSM8K (8-shot, chain of thought) in <run dir>/gsm_results.",
        'GSM_ARGS="..." (more eval flags)', ("gsm/test.jsonl",),
        (("GSM8K", "gsm_results", "eval.gsm.run_eval", ("--data_dir", "{data}/gsm"), ("--n_shot", "8"), True,
          "GSM_ARGS"),)),
    "code": Task(
        "code_alpaca", "codex_humaneval/HumanEval.jsonl.gz",
        "Trains on Code Alpaca, then evaluates HumanEval (n = 20 samples) in <run dir>/codex_results/pass1 "
        "(temperature 0.1, pass@1/5/10/20) and pass10 (temperature 0.8, pass@10).",
        'CODEX_ARGS="..." (more eval flags)', ("codex_humaneval/HumanEval.jsonl.gz",),
        (("HumanEval (pass@1, T=0.1)", "codex_results/pass1", "eval.codex_humaneval.run_eval",
          ("--data_file", "{data}/codex_humaneval/HumanEval.jsonl.gz"),
          ("--eval_pass_at_ks", "1", "5", "10", "20", "--unbiased_sampling_size_n", "20", "--temperature", "0.1"), True,
          "CODEX_ARGS"),
         ("HumanEval (pass@10, T=0.8)", "codex_results/pass10", "eval.codex_humaneval.run_eval",
          ("--data_file", "{data}/codex_humaneval/HumanEval.jsonl.gz"),
          ("--eval_pass_at_ks", "10", "--unbiased_sampling_size_n", "20", "--temperature", "0.8"), True,
          "CODEX_ARGS"))),
}


@dataclass(frozen=True)
class Launcher:
    """What a top-level ft_*.sh launcher sets before it sources scripts/launch.sh."""

    name: str  # its file name
    directory: str  # the repository (the launcher's folder)
    caller: str  # the directory it was started from: relative paths given by the user are taken from there
    task: str
    model_default: str
    run_prefix: str
    eval_batch_size_default: str
    train_length: str  # "--max_steps N" or "--num_train_epochs N"
    python: str

    @property
    def train_file_default(self) -> str:
        dataset = TASKS[self.task].dataset
        return f"data/processed/{dataset}/{dataset}_data.jsonl"


def method_choices() -> list[str]:
    """The registered methods, MoS (the project's own) first."""
    return sorted(registry(), key=lambda name: name != "mos")


def usage(launcher: Launcher) -> str:
    task = TASKS[launcher.task]
    width = max(map(len, registry()))
    modes = "\n".join(f"  {m.name.ljust(width)}  {m.mapping}" for m in registry().values())
    name = launcher.name
    return f"""\
usage: bash {name} lora_r seed GPU_ID learning_rate finetune_mode init_lora_A_vec_value \\
                              init_lora_A_vec_std valid_param_private_r valid_param_lora_r num_chunk_per_vec

{task.description}

  lora_r                 rank r of the materialised adapter (e.g. 8)
  seed                   random seed (e.g. 0)
  GPU_ID                 CUDA device(s), e.g. 0 or 0,1 (sets CUDA_VISIBLE_DEVICES; ignored without GPUs)
  learning_rate          e.g. 2e-4
  finetune_mode          {' | '.join(method_choices())}
  init_lora_A_vec_value  mean of the frozen per-rank scaling vector (1 in the paper; MoS only)
  init_lora_A_vec_std    its std (0 in the paper; MoS only)
  valid_param_private_r  p, private ranks per layer (prolora: u, unshared ranks)
  valid_param_lora_r     e, parameter-equivalent rank (MoS only)
  num_chunk_per_vec      c, shards per rank vector (prolora: m = n, chunk copies along in / out)

What each finetune_mode reads (the others are recorded in the run name and ignored):
{modes}
Every mode leaves a plain LoRA adapter in the run directory (exported exactly), so evaluation is the same.

example (the original's example run: r=16, e=4, p=2, c=4, lr 2e-4):  bash {name} 16 0 0 2e-4 mos 1 0 2 4 4
baselines at about the same budget (python -m open_instruct.param_table --model llama2-7b prints the counts):
  bash {name} 2 0 0 2e-4 lora 1 0 0 1 1        bash {name} 256 0 0 2e-4 vera 1 0 0 1 1
  bash {name} 8 0 0 2e-4 prolora 1 0 0 1 4    bash {name} 46 0 0 2e-4 tied_lora 1 0 0 1 1

Environment overrides (defaults = the paper's settings; relative paths are taken from the current directory):
  MODEL={launcher.model_default}   TRAIN_FILE={launcher.train_file_default}
  EVAL_DATA_DIR=data/eval ({task.eval_data} inside)   OUTPUT_ROOT=./output (of the repository)
  MAX_STEPS=10000   BATCH_SIZE=16   MAX_SEQ_LENGTH=512   MAX_EVAL_SAMPLES=1024 (held-out examples; a file
  too small for them holds out 10% instead)   EVAL_STEPS=1000   SAVE_STEPS=1000   LOGGING_STEPS=10
  NUM_GPUS=(count of GPU_ID; 0 without CUDA)   USE_QLORA=1 on GPU / 0 on CPU   CHAT_FORMAT=tulu|tokenizer
  TRAIN_FORMAT=auto|instruction|text (text: continued pretraining on {{"text": ...}} JSONL, loss on every token)
  PACKING=0|1 (1: padding-free batches, exact)   PRECISION=bf16|fp32 (default: bf16 on GPU, fp32 on CPU)
  EVAL_BATCH_SIZE={launcher.eval_batch_size_default}   USE_VLLM=0|1   SKIP_EVAL=0|1   PYTHON=python   REPORT_TO=tensorboard
  EXTRA_ARGS="..." (more finetune_trainer.py flags)   {task.extra_env}
Runs:
  RUN_DIR=<run dir>   resume an interrupted run in that directory (same arguments; a completed run is refused)
  SIGTERM / SIGUSR1   (preemption) the launcher passes it on: training saves a checkpoint and stops, the launcher
                      prints the resume command and exits with 75; an evaluation stops and keeps finished parts
  NUM_MACHINES=1  MACHINE_RANK=0  MAIN_PROCESS_IP=  MAIN_PROCESS_PORT=29500   several machines (accelerate's
                      multi-machine launch; one launch per machine, all with the same RUN_DIR on a shared
                      filesystem; machine 0 evaluates). scripts/slurm/train.sbatch sets them from SLURM
  EVAL_ONLY=1         with RUN_DIR: run only the evaluations whose metrics.json is missing (completed runs)
  DRY_RUN=1           print the training and evaluation commands, create nothing
"""


# ----------------------------------------------------------------------------------------------------------- checks
def _words(text: str) -> list[str]:
    """A variable's first line split into words at blanks, as bash's ``read -r -a`` does (no quotes, no globs)."""
    line = text.split("\n", 1)[0].strip(" \t")
    return [w for w in re.split(r"[ \t]+", line) if w]


class Env:
    """The environment overrides, read and checked one at a time (the first wrong one is the error)."""

    def __init__(self, environ):
        self.environ = environ

    def text(self, name: str, default: str = "") -> str:
        return self.environ.get(name) or default

    def int(self, name: str, default: str | None, low: int) -> int | None:
        value = self.text(name, default or "")
        if default is None and not value:
            return None
        if not INT.fullmatch(value) or int(value) < low:
            raise UserError(f"{name} must be an integer >= {low}, got '{value}'")
        return int(value)

    def flag(self, name: str, default: str = "0") -> bool | None:
        value = self.text(name, default)
        if default == "" and not value:
            return None
        if value not in ("0", "1"):
            raise UserError(f"{name} must be 0 or 1, got '{value}'")
        return value == "1"

    def choice(self, name: str, default: str, choices: tuple[str, ...], wording: str) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise UserError(f"{name} must be {wording}, got '{value}'")
        return value


def _positional(args: list[str]) -> dict:
    """The ten positional arguments, checked in order; typed values by their names."""
    a = dict(zip(POSITIONAL, args))
    checks = (
        ("lora_r", INT, 1, "a positive integer"), ("seed", INT, 0, "a non-negative integer"),
        ("GPU_ID", re.compile(r"[0-9]+(,[0-9]+)*"), None, "look like 0 or 0,1"),
        ("learning_rate", NUMBER, None, "a number like 2e-4"), ("finetune_mode", None, None, None),
        ("init_lora_A_vec_value", NUMBER, None, "a number"), ("init_lora_A_vec_std", NUMBER, None, "a number >= 0"),
        ("valid_param_private_r", INT, 0, "an integer >= 0"), ("valid_param_lora_r", INT, 1, "a positive integer"),
        ("num_chunk_per_vec", INT, 1, "a positive integer"))
    for name, pattern, low, wording in checks:
        value = a[name]
        if name == "finetune_mode":
            if value not in registry():
                raise UserError(f"finetune_mode must be one of {', '.join(method_choices())}; got '{value}'")
        elif not pattern.fullmatch(value) or (low is not None and int(value) < low):
            verb = "" if wording.startswith("look") else "be "
            raise UserError(f"{name} must {verb}{wording}, got '{value}'")
    return a


def _abspath(path: str, caller: str) -> str:
    """Absolute and normalised (./ and ../ resolved, symlinks kept), relative to ``caller``; ~/ is the home."""
    if path.startswith("~/"):
        path = os.path.join(os.path.expanduser("~"), path[2:])
    return os.path.normpath(os.path.join(caller, path))


def _looks_like_path(name: str, caller: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.path.exists(os.path.join(caller, name)) or name.count("/") > 1


@dataclass
class Plan:
    """One launch: the spec and what only this launch decides (machine, dry run, the run directory)."""

    spec: RunSpec
    dry_run: bool
    skip_eval: bool
    eval_only: bool
    machine_rank: int
    main_process_ip: str
    main_process_port: int
    accelerate_config: str
    run_dir: str  # RUN_DIR (a resume), or "" for a new run below output_root
    output_root: str
    use_vllm: bool
    device_args: tuple[str, ...]
    eval_device_args: tuple[str, ...]
    preprocessing_workers: int
    report_to: str


def build(launcher: Launcher, args: list[str], environ=None) -> Plan:
    """The checked plan of a launch (``UserError`` names the first wrong value); finds the device. ``environ``:
    the overrides (default: this process's environment as it is at the call)."""
    a = _positional(args)
    env = Env(os.environ if environ is None else environ)
    batch_size = env.int("BATCH_SIZE", "16", 1)
    max_seq_length = env.int("MAX_SEQ_LENGTH", "512", 1)
    max_eval_samples = env.int("MAX_EVAL_SAMPLES", "1024", 0)
    eval_steps, save_steps = env.int("EVAL_STEPS", "1000", 1), env.int("SAVE_STEPS", "1000", 1)
    logging_steps = env.int("LOGGING_STEPS", "10", 1)
    eval_batch_size = env.int("EVAL_BATCH_SIZE", launcher.eval_batch_size_default, 1)
    env.int("MAX_STEPS", None, 1)
    num_gpus = env.int("NUM_GPUS", None, 0)
    workers = env.int("PREPROCESSING_WORKERS", None, 1)
    use_qlora = env.flag("USE_QLORA", "")
    skip_eval, eval_only, dry_run = env.flag("SKIP_EVAL"), env.flag("EVAL_ONLY"), env.flag("DRY_RUN")
    use_vllm, packing = env.flag("USE_VLLM"), env.flag("PACKING")
    num_machines, machine_rank = env.int("NUM_MACHINES", "1", 1), env.int("MACHINE_RANK", "0", 0)
    port = env.int("MAIN_PROCESS_PORT", "29500", 1)
    if machine_rank >= num_machines:
        raise UserError(f"MACHINE_RANK must be below NUM_MACHINES ({num_machines}), got {machine_rank}")
    if num_machines > 1 and not env.text("MAIN_PROCESS_IP"):
        raise UserError(f"NUM_MACHINES={num_machines} needs MAIN_PROCESS_IP (the address of machine 0)")
    if num_machines > 1 and not env.text("RUN_DIR"):
        raise UserError(f"NUM_MACHINES={num_machines} needs RUN_DIR=<run dir>, one directory on a filesystem all "
                        "machines share (create it first)")
    train_format = env.choice("TRAIN_FORMAT", "auto", ("auto", "instruction", "text"), "auto, instruction or text")
    precision = env.choice("PRECISION", "-", ("-", "fp32", "bf16"), "fp32 or bf16")
    chat_format = env.choice("CHAT_FORMAT", "tulu", tuple(CHAT_FUNCTIONS), "tulu or tokenizer")

    caller = launcher.caller
    model = env.text("MODEL")
    if model and _looks_like_path(model, caller):
        model = _abspath(model, caller)
        if not os.path.isdir(model):
            raise UserError(f"MODEL {model} is not a directory; give a model directory (config.json + weights) or a "
                            f"hub id like {launcher.model_default}")
    paths = {var: _abspath(env.text(var), caller) if env.text(var) else ""
             for var in ("TRAIN_FILE", "EVAL_DATA_DIR", "OUTPUT_ROOT", "RUN_DIR", "ACCELERATE_CONFIG")}
    extra, words = [], _words(env.text("EXTRA_ARGS"))
    i = 0
    while i < len(words):  # the old resume recipe, EXTRA_ARGS="--output_dir DIR", means RUN_DIR=DIR
        word = words[i]
        if word == "--output_dir":
            if i + 1 >= len(words):
                raise UserError("EXTRA_ARGS: --output_dir needs a directory")
            paths["RUN_DIR"] = _abspath(words[i + 1], caller)
            i += 1
        elif word.startswith("--output_dir="):
            paths["RUN_DIR"] = _abspath(word.removeprefix("--output_dir="), caller)
        elif word.startswith("--overwrite_output_dir"):
            raise UserError("EXTRA_ARGS: the launcher never overwrites a run; start a new run (leave RUN_DIR unset)")
        else:
            extra.append(word)
        i += 1
    if eval_only and not paths["RUN_DIR"]:
        raise UserError("EVAL_ONLY=1 needs RUN_DIR=<run dir> (the run to evaluate)")

    task = TASKS[launcher.task]
    model = model or launcher.model_default
    train_file = paths["TRAIN_FILE"] or launcher.train_file_default
    eval_data_dir = paths["EVAL_DATA_DIR"] or "data/eval"
    if not eval_only and not os.path.isfile(train_file):
        raise UserError(f"TRAIN_FILE {train_file} not found: run scripts/prepare_train_data.sh {task.dataset} or set "
                        "TRAIN_FILE")
    if not skip_eval:  # found out now, not after hours of training
        for needed in task.inputs:
            if not os.path.exists(f"{eval_data_dir}/{needed}"):
                raise UserError(f"evaluation data {eval_data_dir}/{needed} not found: run scripts/prepare_eval_data.sh, "
                                "set EVAL_DATA_DIR, or SKIP_EVAL=1")

    cuda, native_bf16 = _probe_device(a["GPU_ID"], launcher.python)
    if cuda:
        num_gpus = num_gpus if num_gpus is not None else len(a["GPU_ID"].split(","))
        use_qlora = True if use_qlora is None else use_qlora
        precision = "bf16" if precision == "-" else precision
        device_args = ("--torch_dtype", "bfloat16", "--bf16", "True") if precision == "bf16" else (
            "--torch_dtype", "float32", "--bf16", "False")
        device_args += ("--tf32", "True", "--gradient_checkpointing", "True")
        eval_device_args = ("--load_in_8bit",)
        workers = workers or 16
    else:
        num_gpus, use_qlora, workers = 0, bool(use_qlora), workers or 1
        precision = "fp32" if precision == "-" else precision
        if precision == "bf16":  # as on a GPU: frozen base weights in bfloat16, the trainable adapter in float32
            device_args, eval_device_args = ("--torch_dtype", "bfloat16", "--use_cpu", "True", "--bf16", "True"), (
                "--torch_dtype", "bfloat16")
            _note("no CUDA device: training and evaluating on the CPU in bfloat16 (adapter weights float32)")
            if not native_bf16:
                _note("warning: this CPU has no native bfloat16 (avx512_bf16/AMX): PRECISION=bf16 is far slower "
                      "here than PRECISION=fp32")
        else:
            device_args, eval_device_args = ("--torch_dtype", "float32", "--use_cpu", "True"), ()
            _note("no CUDA device: training on the CPU in float32 without 4-bit quantization")

    length = launcher.train_length.split()
    spec = RunSpec(
        launcher=launcher.name, task=launcher.task, run_prefix=launcher.run_prefix,
        started=time.strftime("%Y%m%d-%H%M%S"), positional=tuple(args),
        method=MethodSpec(a["finetune_mode"], int(a["lora_r"]), float(a["init_lora_A_vec_value"]),
                          float(a["init_lora_A_vec_std"]), int(a["valid_param_private_r"]),
                          int(a["valid_param_lora_r"]), int(a["num_chunk_per_vec"])),
        model=model,
        data=DataSpec(train_file, train_format, chat_format, max_seq_length, max_eval_samples, packing),
        training=TrainingSpec(
            seed=int(a["seed"]), learning_rate=float(a["learning_rate"]), batch_size=batch_size,
            train_length=tuple(length), eval_steps=eval_steps, save_steps=save_steps, logging_steps=logging_steps,
            device="cuda" if cuda else "cpu", precision=precision, use_qlora=use_qlora, gpu_ids=a["GPU_ID"],
            num_gpus=num_gpus, num_machines=num_machines, extra_args=tuple(extra)),
        evaluations=tuple(Evaluation(name, save, module, tuple(w.replace("{data}", eval_data_dir) for w in before),
                                     after, vllm, tuple(_words(env.text(var))))
                          for name, save, module, before, after, vllm, var in task.evaluations),
        eval_data_dir=eval_data_dir, eval_batch_size=eval_batch_size)
    return Plan(spec, dry_run, skip_eval, eval_only, machine_rank, env.text("MAIN_PROCESS_IP"), port,
                paths["ACCELERATE_CONFIG"], paths["RUN_DIR"], paths["OUTPUT_ROOT"] or f"{launcher.directory}/output",
                use_vllm, device_args, eval_device_args, workers, env.text("REPORT_TO", "tensorboard"))


def _note(message: str) -> None:
    print(f"[launcher] {message}", file=sys.stderr, flush=True)


PROBE = ("import torch; from open_instruct.model_loading import cpu_native_bf16; "
         "print(int(torch.cuda.is_available()), int(cpu_native_bf16()))")


def _probe_device(gpu_ids: str, python: str) -> tuple[bool, bool]:
    """(CUDA available, the CPU computes bfloat16 natively), asked of PYTHON, the interpreter that will train, on
    the devices GPU_ID makes visible."""
    import subprocess

    probe = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,
                           env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu_ids})
    answer = probe.stdout.split()
    if probe.returncode != 0 or not answer or answer[0] not in ("0", "1"):
        raise UserError(f"cannot import torch with PYTHON={python}; activate the project's environment "
                        "(bash scripts/bootstrap.sh)")
    return answer[0] == "1", answer[1:] == ["1"]


# ----------------------------------------------------------------------------------------------------------- commands
def train_command(plan: Plan, out: str, python: str) -> list[str]:
    """The trainer's command line: the original launcher's flags, from the spec."""
    spec, t, d, m = plan.spec, plan.spec.training, plan.spec.data, plan.spec.method
    a = dict(zip(POSITIONAL, spec.positional))  # the values as given, as the original passes them on
    if t.num_machines > 1:  # accelerate's multi-machine launch (torchrun's static rendezvous on machine 0)
        per_machine = t.num_gpus if t.num_gpus > 0 else 1
        machine = ["--config_file", plan.accelerate_config] if plan.accelerate_config else ["--multi_gpu"]
        run = [python, "-m", "accelerate.commands.launch", *machine, "--num_machines", str(t.num_machines),
               "--machine_rank", str(plan.machine_rank), "--main_process_ip", plan.main_process_ip,
               "--main_process_port", str(plan.main_process_port), "--num_processes",
               str(t.num_machines * per_machine), "--rdzv_backend", "static", "--same_network"]
    elif t.num_gpus > 1:
        run = [python, "-m", "accelerate.commands.launch", "--config_file",
               plan.accelerate_config or "configs/accelerate/multi_gpu.yaml", "--num_processes", str(t.num_gpus)]
    else:
        run = [python]
    data_args = ([] if d.train_format == "auto" else ["--train_format", d.train_format]) + (
        ["--padding_free", "True"] if d.packing else [])  # only what differs from the trainer's defaults
    eval_args = ["--do_eval", "False"] if d.max_eval_samples == 0 else [
        "--do_eval", "True", "--max_eval_samples", str(d.max_eval_samples), "--eval_strategy", "steps",
        "--eval_steps", str(t.eval_steps), "--per_device_eval_batch_size", str(t.batch_size)]
    return [
        *run, "open_instruct/finetune_trainer.py",
        "--model_name_or_path", spec.model, "--train_file", d.train_file, "--max_seq_length", str(d.max_seq_length),
        "--use_lora", "True", "--use_qlora", str(t.use_qlora), "--enable_lora_vec", "True", "--lora_alpha", "16",
        "--lora_dropout", "0.1", "--enable_lora_rotation", "True", "--enable_lora_bias", "False",
        "--init2zero_via_vec", "False", "--lora_modules", "all",
        "--ft_mode", m.name, "--lora_r", a["lora_r"], "--init_lora_A_vec_value", a["init_lora_A_vec_value"],
        "--init_lora_A_vec_std", a["init_lora_A_vec_std"], "--valid_param_private_r", a["valid_param_private_r"],
        "--valid_param_lora_r", a["valid_param_lora_r"], "--num_chunk_per_vec", a["num_chunk_per_vec"],
        "--chat_format", d.chat_format, *data_args, *plan.device_args,
        "--use_fast_tokenizer", "False", "--preprocessing_num_workers", str(plan.preprocessing_workers),
        "--group_by_length", "True", "--remove_unused_columns", "True", "--optim", "paged_adamw_32bit",
        "--lr_scheduler_type", "linear", "--warmup_ratio", "0.03",
        "--per_device_train_batch_size", str(t.batch_size), "--gradient_accumulation_steps", "1", *t.train_length,
        "--learning_rate", a["learning_rate"], "--weight_decay", "0.0", "--max_grad_norm", "0.3",
        "--seed", a["seed"], *eval_args, "--logging_steps", str(t.logging_steps), "--save_steps", str(t.save_steps),
        "--save_total_limit", "1", "--report_to", plan.report_to, "--output_dir", out,
        "--resume_from_checkpoint", "auto", *t.extra_args]


def eval_commands(plan: Plan, out: str, python: str) -> list[tuple[str, str, list[str]]]:
    """``(name, save dir, command)`` of each evaluation, on the base model with the run's adapter."""
    spec = plan.spec
    model_args = ["--model_name_or_path", spec.model, "--tokenizer_name_or_path", spec.model, "--adapter_path", out,
                  "--eval_batch_size", str(spec.eval_batch_size), "--use_slow_tokenizer", *plan.eval_device_args,
                  "--use_chat_format", "--chat_formatting_function", CHAT_FUNCTIONS[spec.data.chat_format]]
    commands = []
    for ev in spec.evaluations:
        save = f"{out}/{ev.save_dir}"
        vllm = ["--use_vllm"] if plan.use_vllm and ev.vllm else []
        commands.append((ev.name, save, [python, "-m", ev.module, *ev.args, "--save_dir", save, *ev.post_args,
                                         *model_args, *vllm, *ev.extra_args]))
    return commands


# ----------------------------------------------------------------------------------------------------------- run dir
def resume_check(plan: Plan) -> None:
    """RUN_DIR must exist, and a run started there must have been started with the same arguments."""
    out = plan.run_dir
    if not os.path.isdir(out):
        raise UserError(f"RUN_DIR {out} does not exist; to start a new run leave RUN_DIR unset (runs go to "
                        "OUTPUT_ROOT)")
    recorded = read_run_spec(out)
    legacy = Path(out) / LEGACY_SIGNATURE
    before = recorded.signature() if recorded else (
        legacy.read_text().rstrip("\n") if legacy.is_file() else None)
    if before is not None and before != plan.spec.signature():
        raise UserError(f"RUN_DIR {out} was started with other arguments ({before}); resume it with those")
    if recorded is None and plan.machine_rank == 0 and not plan.dry_run and not (Path(out) / "completed").exists():
        # machine 0 of a multi-machine run, or a run made before run.json: started when the directory was made
        write_run_spec(replace(plan.spec, started=started_of(out, plan.spec.started)), out)


def started_of(run_dir: str, default: str) -> str:
    """When a run directory without run.json was started: the time in its name (``..._20260101-120000_...``), else
    when its ``launcher_args.txt`` was written, else ``default``."""
    found = re.search(r"_(\d{8}-\d{6})_", f"_{Path(run_dir).name}_")
    if found:
        return found.group(1)
    legacy = Path(run_dir) / LEGACY_SIGNATURE
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(legacy.stat().st_mtime)) if legacy.is_file() else default


def new_run_dir(plan: Plan) -> str:
    """A new run directory, created exclusively (a name taken by a concurrent launch moves on to the next
    second), with its run.json; in a dry run only the name."""
    root = plan.output_root
    spec = plan.spec
    if plan.dry_run:
        return f"{root}/{spec.run_name()}"
    try:
        os.makedirs(os.path.dirname(f"{root}/{spec.run_prefix}"), exist_ok=True)
    except OSError:
        raise UserError(f"cannot create OUTPUT_ROOT {root}") from None
    for _ in range(60):
        out = f"{root}/{spec.run_name()}"
        try:
            os.mkdir(out)
        except FileExistsError:
            time.sleep(1)  # another launch took this second's name: the next second gives a new one
            spec = plan.spec = replace(spec, started=time.strftime("%Y%m%d-%H%M%S"))
            continue
        except OSError:
            raise UserError(f"cannot create the run directory {out}") from None
        write_run_spec(spec, out)
        return out
    raise UserError(f"could not create a new run directory in {root} (names taken for 60 s)")


# ----------------------------------------------------------------------------------------------------------- main
def shell(plan: Plan, python: str) -> str:
    """The launch for scripts/launch.sh: shell assignments, the run directory created or checked."""
    if plan.run_dir:
        resume_check(plan)
        out, state = plan.run_dir, "resumed"
    else:
        out = new_run_dir(plan)
        state = "dry" if plan.dry_run else "new"
    q = shlex.quote
    lines = [f"export CUDA_VISIBLE_DEVICES={q(plan.spec.training.gpu_ids)}", f"out={q(out)}", f"RUN_STATE={state}",
             f"DRY_RUN={int(plan.dry_run)} SKIP_EVAL={int(plan.skip_eval)} EVAL_ONLY={int(plan.eval_only)} "
             f"MACHINE_RANK={plan.machine_rank}",
             "TRAIN_CMD=(" + " ".join(map(q, train_command(plan, out, python))) + ")",
             "task_evaluate() {"]
    lines += [f"  evaluate {q(name)} {q(save)} " + " ".join(map(q, cmd)) for name, save, cmd in
              eval_commands(plan, out, python)]
    lines.append("  :\n}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m open_instruct.launch", usage="%(prog)s spec --launcher NAME ... "
                                 "-- ARGS...", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["spec"])
    for name in ("launcher", "launcher-dir", "caller-dir", "task", "model-default", "run-prefix",
                 "eval-batch-size-default", "train-length", "python"):
        ap.add_argument(f"--{name}", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after "--": the launcher's positional arguments
    opts, args = ap.parse_args(argv[:cut]), argv[cut + 1:]
    launcher = Launcher(opts.launcher, opts.launcher_dir, opts.caller_dir, opts.task, opts.model_default,
                        opts.run_prefix, opts.eval_batch_size_default, opts.train_length, opts.python)
    try:
        if launcher.task not in TASKS:
            raise UserError(f"unknown TASK '{launcher.task}' ({', '.join(TASKS)})")
        if len(args) != len(POSITIONAL):
            if args:
                print(f"error: expected {len(POSITIONAL)} arguments, got {len(args)}", file=sys.stderr)
            print(usage(launcher), file=sys.stderr, end="")
            return 2
        plan = build(launcher, args)
        sys.stdout.write(shell(plan, launcher.python))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
