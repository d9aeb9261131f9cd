"""The trainer's output directory: which checkpoint a resume may use, what a replaced run leaves behind, and
whether a model / tokenizer path can be loaded at all, each answered before any work is done.

* :func:`last_complete_checkpoint` -- the newest ``checkpoint-N`` that was written to the end. The Trainer
  writes ``trainer_state.json`` last, so a checkpoint interrupted while being saved (SIGINT, preemption, a full
  disk) lacks it or holds a cut-off copy; such checkpoints are skipped, with the reason.
* :func:`clear_previous_run` -- with ``--overwrite_output_dir``, the files and folders an earlier run of the
  trainer (and the evaluators, in ``*_results/``) wrote there, removed by name so nothing of the old run is
  read as part of the new one; anything else in the directory is left alone.
* :func:`model_path_problem` / :func:`tokenizer_path_problem` -- a local path that does not exist, is not a
  model, or holds no tokenizer, said in one line (instead of the hub client's "Repo id must be in the form").
* :func:`hub_problem` -- a hub id while the hub cannot be reached (and nothing of it is cached), said in one
  line within seconds (instead of the hub client's retries, about half a minute per file).
* :func:`resolve_resume`, :func:`check_output_dir`, :func:`clear_output_dir` -- the trainer's use of the above:
  ``--resume_from_checkpoint auto``, the refusal of a completed run, ``--overwrite_output_dir``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import socket
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from open_instruct.errors import UserError, disk_full
from open_instruct.methods import adapter_subdir, registry

logger = logging.getLogger("finetune_trainer")
COMPLETED = "completed"  # written last by the trainer: the run finished and every output exists


class UsageError(UserError, ValueError):
    """A bad argument or input: reported as one clear line, without a traceback."""


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin",
                "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer.tiktoken",
                   "vocab.txt", "sentencepiece.bpe.model")

# The final outputs of a training run: the exported adapter, the tokenizer, the methods' own adapter directories.
FINAL_OUTPUTS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "README.md",
                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
                 "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")
# What a run of finetune_trainer (and the evaluators run by the launchers) writes into its output directory.
RUN_FILES = (*FINAL_OUTPUTS, "train_results.json", "eval_results.json", "all_results.json", "metrics.json",
             "trainer_state.json", "training_args.bin", "run.log", "completed", "preempted")


def final_dirs() -> re.Pattern:
    """The methods' own adapter directories (``mos_adapter``, ...: one per registered method)."""
    names = "|".join(re.escape(adapter_subdir(name)) for name in registry())
    return re.compile(rf"^({names})$")


def run_dirs() -> re.Pattern:
    """The folders a run writes: checkpoints, the methods' adapter directories, the evaluators' results."""
    return re.compile(rf"^(checkpoint-\d+|{final_dirs().pattern[1:-1]}|(mmlu|tydiqa|bbh|gsm|codex)_results|runs)$")


def trainer_state(path: str | Path) -> dict:
    """A checkpoint's ``trainer_state.json``: its step (``global_step``) and its log (``log_history``)."""
    return json.loads((Path(path) / "trainer_state.json").read_text())


def checkpoint_step(path: str | Path) -> int:
    """The training step a checkpoint was saved at (its ``trainer_state.json`` ``global_step``)."""
    return trainer_state(path)["global_step"]


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be resumed from (a checkpoint written only in part), or ``None`` if it is complete."""
    path = Path(path)
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (it is written last: the save was interrupted)"
    try:
        step = checkpoint_step(path)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "trainer_state.json is cut off or not the Trainer's (the save was interrupted)"
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return f"no weights ({' / '.join(WEIGHT_FILES[:2])})"
    match = CHECKPOINT.match(path.name)
    if match and int(match.group(1)) != step:
        return f"trainer_state.json records step {step}, not {match.group(1)}"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[str]]:
    """``(newest complete checkpoint-N or None, ["checkpoint-M: why it was skipped", ...])``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None, []
    found = sorted((int(m.group(1)), p) for p in output_dir.iterdir()
                   if p.is_dir() and (m := CHECKPOINT.match(p.name)))
    skipped = []
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f"{path.name}: {problem}")
    return None, skipped


def remove_partial_checkpoints(output_dir: str | Path) -> list[str]:
    """Remove the checkpoints newer than the last complete one (written in part: a full disk, a kill); return
    their names. Earlier complete checkpoints are never touched."""
    output_dir = Path(output_dir)
    last, _ = last_complete_checkpoint(output_dir)
    newest_good = checkpoint_step(last) if last else -1
    removed = []
    for path in sorted(output_dir.iterdir()) if output_dir.is_dir() else []:
        match = CHECKPOINT.match(path.name)
        if path.is_dir() and match and int(match.group(1)) > newest_good and checkpoint_problem(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def remove_final_outputs(output_dir: str | Path) -> list[str]:
    """Remove the final adapter(s) and tokenizer files of a run (written in part when the disk filled up)."""
    output_dir = Path(output_dir)
    removed, adapter_dirs = [], final_dirs()
    for path in sorted(output_dir.iterdir()) if output_dir.is_dir() else []:
        if path.is_dir() and adapter_dirs.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.name in FINAL_OUTPUTS:
            path.unlink()
        else:
            continue
        removed.append(path.name)
    return removed


def clear_previous_run(output_dir: str | Path) -> list[str]:
    """Remove what an earlier run wrote into ``output_dir`` (by name); return the names removed."""
    output_dir = Path(output_dir)
    removed, written = [], run_dirs()
    if not output_dir.is_dir():
        return removed
    for path in sorted(output_dir.iterdir()):
        if path.is_dir() and not path.is_symlink() and written.match(path.name):
            shutil.rmtree(path)
        elif (path.is_file() or path.is_symlink()) and path.name in RUN_FILES:
            path.unlink()
        else:
            continue
        removed.append(path.name)
    return removed


def looks_like_local_path(name: str) -> bool:
    """A local path rather than a hub id: absolute, ./ ../ ~, an existing path, or more than one '/'."""
    return name.startswith(("/", ".", "~")) or Path(name).exists() or name.count("/") > 1


def model_path_problem(name: str, flag: str = "--model_name_or_path") -> str | None:
    """One line when ``name`` is meant as a local model directory but cannot be one."""
    if not looks_like_local_path(name):
        return None
    path = Path(name).expanduser()
    if not path.exists():
        return (f"{flag} {name}: no such directory; give a model directory (config.json + weights) or a hub id "
                "such as meta-llama/Llama-2-7b-hf")
    if not path.is_dir():
        return f"{flag} {name} is a file; give the model's directory (config.json + weights)"
    if not (path / "config.json").is_file():
        return f"{flag} {name} is not a model directory (no config.json); give the directory save_pretrained wrote"
    return None


def tokenizer_path_problem(name: str, flag: str = "--model_name_or_path") -> str | None:
    """One line when the local directory ``name`` holds no tokenizer files."""
    if not looks_like_local_path(name):
        return None
    path = Path(name).expanduser()
    if path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        return (f"{flag} {name} holds no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...); copy the base "
                "model's tokenizer files into it or pass --tokenizer_name <dir or hub id>")
    return None


# ---------------------------------------------------------------------------------------------- trainer
def resolve_resume(training_args) -> str | None:
    """``auto`` -> newest complete checkpoint in output_dir (or None); a path must be a complete checkpoint.

    With ``--overwrite_output_dir`` the earlier run is replaced, so ``auto`` starts fresh.
    """
    value = training_args.resume_from_checkpoint
    if value in (None, "", "False", "false"):
        return None
    if value in ("auto", "True", "true"):
        if training_args.overwrite_output_dir:
            return None
        last, skipped = last_complete_checkpoint(training_args.output_dir)
        for reason in skipped:
            print(f"finetune_trainer: warning: not resuming from {reason}", file=sys.stderr)
        if last is None:
            logger.info("resume_from_checkpoint=auto: no complete checkpoint in %s, starting fresh",
                        training_args.output_dir)
        return None if last is None else str(last)
    if not Path(value).is_dir():
        raise UsageError(f"--resume_from_checkpoint {value} is not a directory; pass a checkpoint-* dir or 'auto'.")
    problem = checkpoint_problem(value)
    if problem:
        raise UsageError(f"--resume_from_checkpoint {value} is incomplete ({problem}); pass an earlier checkpoint "
                         "or 'auto' (the newest complete one).")
    if training_args.overwrite_output_dir and Path(value).resolve().parent == Path(training_args.output_dir).resolve():
        raise UsageError(f"--overwrite_output_dir True would delete {value} before resuming from it; drop one of them.")
    return value


def check_output_dir(training_args, resume: str | None) -> None:
    """A completed run is never resumed or replaced without --overwrite_output_dir (which clears it first)."""
    out = Path(training_args.output_dir)
    if (out / COMPLETED).exists() and not training_args.overwrite_output_dir:
        raise UsageError(f"{out} already holds a completed run (marked by {out / COMPLETED}); nothing to resume. "
                         "Choose another --output_dir, or pass --overwrite_output_dir True to replace it.")
    if not resume and not training_args.overwrite_output_dir and last_complete_checkpoint(out)[0] is not None:
        logger.warning("%s holds checkpoints of an unfinished run; pass --resume_from_checkpoint auto to continue "
                       "it. Starting fresh.", out)


def clear_output_dir(training_args) -> None:
    """--overwrite_output_dir: remove the earlier run's outputs (once, on the main process) before anything starts."""
    if not training_args.overwrite_output_dir or int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:
        return
    removed = clear_previous_run(training_args.output_dir)
    if removed:
        print(f"finetune_trainer: --overwrite_output_dir: removed the earlier run's {', '.join(removed)} from "
              f"{training_args.output_dir}", file=sys.stderr)


def check_paths_and_numbers(model_args, data_args, mos_args, training_args) -> None:
    """The trainer's arguments that would otherwise fail late or deep inside a library, as one UsageError each."""
    problem = model_path_problem(model_args.model_name_or_path) or tokenizer_path_problem(
        model_args.tokenizer_name or model_args.model_name_or_path,
        "--tokenizer_name" if model_args.tokenizer_name else "--model_name_or_path")
    if problem:
        raise UsageError(problem)
    out = Path(training_args.output_dir).expanduser()
    if (out / "config.json").is_file():  # runs never write a config.json: this is a model (maybe the base model)
        raise UsageError(f"--output_dir {out} holds a model (config.json); the run's adapter, tokenizer and "
                         "checkpoints would be written over its files. Choose a new directory.")
    if data_args.max_seq_length < 1:
        raise UsageError(f"--max_seq_length must be a positive number of tokens, got {data_args.max_seq_length}")
    if data_args.max_eval_samples is not None and data_args.max_eval_samples < 0:
        raise UsageError(f"--max_eval_samples must be >= 0, got {data_args.max_eval_samples}")
    for flag, value, low in (("--per_device_train_batch_size", training_args.per_device_train_batch_size, 1),
                             ("--per_device_eval_batch_size", training_args.per_device_eval_batch_size, 1),
                             ("--gradient_accumulation_steps", training_args.gradient_accumulation_steps, 1),
                             ("--lora_r", mos_args.lora_r, 1), ("--max_train_samples", data_args.max_train_samples, 1)):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if not 0 <= mos_args.lora_dropout < 1 or not training_args.learning_rate > 0:
        raise UsageError(f"--lora_dropout must be in [0, 1) and --learning_rate > 0; got {mos_args.lora_dropout} "
                         f"and {training_args.learning_rate}")


@functools.cache
def hub_unreachable(endpoint: str, timeout: float = 3.0) -> str | None:
    """Why the model hub at ``endpoint`` cannot be reached (a TCP connection within ``timeout`` seconds, name
    lookup included), or None when it answers. Asked once per process."""
    parsed = urllib.parse.urlsplit(endpoint)
    host, port = parsed.hostname or endpoint, parsed.port or (80 if parsed.scheme == "http" else 443)
    answer: list[str | None] = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(None)
        except OSError as err:
            answer.append(f"{host}: {err.strerror or err}")

    probe = threading.Thread(target=connect, daemon=True)  # a stuck name lookup has no timeout of its own
    probe.start()
    probe.join(timeout + 1)
    return answer[0] if answer else f"{host}: no answer in {timeout:g} s"


def hub_problem(name: str, flag: str = "--model_name_or_path") -> str | None:
    """One line when ``name`` is a hub id that cannot be had: the hub is on (no HF_HUB_OFFLINE), nothing of the
    repository is in the local cache, no proxy is configured, and the hub does not answer. Said in ~3 s instead
    of the hub client's retries (about half a minute per file) and a generic error."""
    from huggingface_hub import constants

    if looks_like_local_path(name) or constants.HF_HUB_OFFLINE:
        return None
    proxies = urllib.request.getproxies()  # the *_proxy variables, either case (and the system's settings)
    if any(proxies.get(scheme) for scheme in ("https", "http", "all")):
        return None  # a direct connection says nothing about the proxied one
    if (Path(constants.HF_HUB_CACHE) / ("models--" + name.replace("/", "--"))).is_dir():
        return None  # cached: the hub client falls back to the cache
    reason = hub_unreachable(constants.ENDPOINT)
    if reason is None:
        return None
    return (f"{flag} {name} is not a local directory, so it is read as a hub id, and the model hub cannot be reached "
            f"({reason}). Download it where there is internet (hf download {name} --local-dir DIR) "
            "and pass DIR, or point HF_HOME at a cache that holds it.")


def load_checked(what: str, name, load, *args, flag: str = "--model_name_or_path", **kwargs):
    """``load(name, *args, **kwargs)`` of a model or tokenizer (``what``); a local path that is not one, a hub id
    the hub cannot give, or files that cannot be read (cut off, not a checkpoint), is a UsageError naming it
    instead of a library traceback."""
    from safetensors import SafetensorError

    if "tokenizer" in what:  # a tokenizer directory needs no config.json, only tokenizer files
        missing = looks_like_local_path(str(name)) and not Path(str(name)).expanduser().exists()
        problem = (f"{flag} {name}: no such directory; give a model or tokenizer directory or a hub id" if missing
                   else tokenizer_path_problem(str(name), flag))
    else:
        problem = model_path_problem(str(name), flag)
    problem = problem or hub_problem(str(name), flag)
    if problem:
        raise UsageError(problem)
    try:
        return load(name, *args, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError, SafetensorError) as err:
        if disk_full(err):
            raise
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
        fix = ("copy the checkpoint again (config.json, weights, tokenizer files)" if looks_like_local_path(str(name))
               else "check the hub id, your access to it (HF_TOKEN for a gated model) and the connection")
        raise UsageError(f"cannot load the {what} {name}: {lines[-1][:300]}; {fix}") from None


def expected_failures(fn, what: str, *args, **kwargs):
    """Run ``fn``; a bad input it reports (unreadable file, bad data, a model or tokenizer that cannot load)
    becomes a UsageError: one line, exit code 2."""
    from safetensors import SafetensorError

    try:
        return fn(*args, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError, SafetensorError) as err:
        if disk_full(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, SafetensorError):
            first = f"a weights file is cut off or not safetensors ({first}); copy the checkpoint again"
        raise UsageError(f"{what}: {first}" if what else first) from err
