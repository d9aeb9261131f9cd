"""Chat formats for evaluation prompts.

``--chat_formatting_function`` names one of these, either by dotted path as the launchers pass it
(``eval.templates.create_prompt_with_tulu_chat_format``) or by a short name:

    tulu        create_prompt_with_tulu_chat_format: the Tulu format the original MoS/open-instruct models
                are trained with ("<|user|>\\n...\\n<|assistant|>\\n")
    tokenizer   create_prompt_with_tokenizer_chat_template: the tokenizer's own chat template, so that models
                such as SmolLM2 (ChatML) are evaluated in their native format

A formatting function takes ``messages`` (a list of ``{"role", "content"}`` dicts) and returns the prompt
text that ends where the assistant's answer starts. ``format_chat_prompt`` calls any such function,
passing the tokenizer only to functions that accept one (the original open-instruct functions do not).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

TULU_ROLES = ("system", "user", "assistant")


def create_prompt_with_tulu_chat_format(messages, tokenizer=None, bos: str = "<s>", eos: str | None = None,
                                        add_bos: bool = False) -> str:
    """The Tulu chat format of open-instruct, character for character.

    Each message becomes ``"<|system|>\\n{content}\\n"``, ``"<|user|>\\n{content}\\n"`` or
    ``"<|assistant|>\\n{content.strip()}{eos}\\n"``, and the prompt ends with ``"<|assistant|>\\n"``.
    ``eos`` defaults to the tokenizer's eos token (``"</s>"`` without a tokenizer). The BOS string is
    prepended only with ``add_bos=True``; evaluation leaves it to the tokenizer (``add_special_tokens``).
    """
    if eos is None:
        eos = getattr(tokenizer, "eos_token", None) or "</s>"
    text = ""
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            text += "<|system|>\n" + content + "\n"
        elif role == "user":
            text += "<|user|>\n" + content + "\n"
        elif role == "assistant":
            text += "<|assistant|>\n" + content.strip() + eos + "\n"
        else:
            raise ValueError(f"Tulu chat format supports the roles {TULU_ROLES}; got role {role!r}.")
    text += "<|assistant|>\n"
    return bos + text if add_bos else text


def create_prompt_with_tokenizer_chat_template(messages, tokenizer=None, add_bos: bool = False) -> str:
    """The tokenizer's own chat template with the generation prompt appended (e.g. ChatML for SmolLM2).

    Templates that write the BOS text themselves (Llama-3 style) would get a second BOS when the prompt is
    tokenized with special tokens; so with ``add_bos=False`` a leading BOS string is removed when the
    tokenizer adds BOS by itself.
    """
    if tokenizer is None:
        raise ValueError("create_prompt_with_tokenizer_chat_template needs the tokenizer (tokenizer=...).")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"The tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; use "
            "--chat_formatting_function tulu (or eval.templates.create_prompt_with_tulu_chat_format) instead.")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and not add_bos and _tokenizer_adds_bos(tokenizer):
        text = text[len(bos):]
    return text


def _tokenizer_adds_bos(tokenizer) -> bool:
    ids = tokenizer("a").input_ids
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


SHORT_NAMES: dict[str, Callable] = {
    "tulu": create_prompt_with_tulu_chat_format,
    "tokenizer": create_prompt_with_tokenizer_chat_template,
}


def get_chat_formatting_function(name: str) -> Callable:
    """Resolve ``--chat_formatting_function``: a short name (``tulu``, ``tokenizer``) or a dotted path."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise ValueError(f"Unknown chat formatting function {name!r}: use one of {sorted(SHORT_NAMES)} or a "
                         "dotted path such as eval.templates.create_prompt_with_tulu_chat_format.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"Cannot import module {module_name!r} for --chat_formatting_function {name!r}: {err}") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"Module {module_name!r} has no function {attr!r} (--chat_formatting_function {name!r}).")
    return fn


def chat_function(chat_format: str | Callable | None) -> Callable | None:
    """The formatting function of an evaluator's ``chat_format``: a name as ``get_chat_formatting_function`` takes
    it, or the function itself; ``None`` (plain prompts, no chat format) stays ``None``."""
    if chat_format is None or callable(chat_format):
        return chat_format
    return get_chat_formatting_function(chat_format)


def format_chat_prompt(fn: Callable, messages, tokenizer=None) -> str:
    """Call a formatting function with ``add_bos=False``, passing the tokenizer if the function takes one."""
    params = inspect.signature(fn).parameters
    kwargs = {"add_bos": False} if "add_bos" in params else {}
    if "tokenizer" in params:
        kwargs["tokenizer"] = tokenizer
    return fn(messages, **kwargs)
