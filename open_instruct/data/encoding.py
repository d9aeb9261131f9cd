"""Tokenize one training example and build its label mask (``-100`` = no loss).

Two record formats (see :mod:`open_instruct.data.loading`) and, for ``messages``, two chat formats:

* ``"tulu"`` — the format of the original (open-instruct / MoS)::

      <|system|>\\n{system}\\n<|user|>\\n{user}\\n<|assistant|>\\n{assistant}{eos}\\n<|user|>\\n...

  (message contents ``.strip()``-ped, the whole text ``.strip()``-ped). Every non-assistant message and the
  ``<|assistant|>\\n`` header after it are masked; span boundaries are found by tokenizing the message
  prefixes, as open-instruct does. What stays trainable is each assistant reply, its eos and, for a reply
  that is followed by another message, the ``\\n`` separating it from the next role header (the original
  trains on that newline too).
* ``"tokenizer"`` — the tokenizer's own chat template (``apply_chat_template``). Only the tokens from the end
  of the rendered generation prompt to the end of the assistant turn (its content and its end-of-turn
  token; trailing whitespace-only tokens such as ChatML's ``\\n`` after ``<|im_end|>`` are masked) are trained.
  Boundaries again come from rendering and tokenizing message prefixes; a template whose rendering of a
  prefix is not a prefix of the full rendering (e.g. one that rewrites earlier turns) is rejected.

All encoders return plain lists (``input_ids``, ``labels``, ``attention_mask``) so they work with
``datasets.map`` and with ``transformers.DataCollatorForSeq2Seq`` (which pads labels with ``-100``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100
CHAT_FORMATS = ("tulu", "tokenizer")
_WHITESPACE = (" ", "\n", "\t")
TULU_ROLE_HEADERS = {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n"}


def _eos_token(tokenizer) -> str:
    if not tokenizer.eos_token:
        raise ValueError("the tokenizer has no eos_token; set one (tokenizer.eos_token = ...) before encoding, "
                         "the model has to learn where a reply ends")
    return tokenizer.eos_token


def _token_ids(tokenizer, text: str, max_seq_length: int | None = None, add_special_tokens: bool = True) -> list[int]:
    kwargs = dict(max_length=max_seq_length, truncation=True) if max_seq_length else {}
    return list(tokenizer(text, add_special_tokens=add_special_tokens, **kwargs)["input_ids"])


def _result(input_ids: list[int], labels: list[int]) -> dict[str, list[int]]:
    return {"input_ids": input_ids, "labels": labels, "attention_mask": [1] * len(input_ids)}


def _mask(labels: list[int], start: int, end: int) -> None:
    for i in range(max(start, 0), min(end, len(labels))):
        labels[i] = IGNORE_INDEX


def encode_with_prompt_completion_format(example: dict[str, Any], tokenizer, max_seq_length: int) -> dict[str, list[int]]:
    """Encode ``{"prompt", "completion"}``: train on the completion and the eos only.

    The text is ``prompt + sep + completion + eos`` where ``sep`` is a single space unless the prompt ends
    with or the completion starts with whitespace (space, newline or tab). It is tokenized with truncation
    to ``max_seq_length``; labels are ``-100`` over the length of the separately tokenized prompt.
    """
    prompt, completion = example["prompt"], example["completion"]
    sep = "" if prompt.endswith(_WHITESPACE) or completion.startswith(_WHITESPACE) else " "
    input_ids = _token_ids(tokenizer, prompt + sep + completion + _eos_token(tokenizer), max_seq_length)
    labels = list(input_ids)
    _mask(labels, 0, len(_token_ids(tokenizer, prompt, max_seq_length)))
    return _result(input_ids, labels)


def tulu_text(messages: Sequence[dict[str, str]], eos_token: str) -> str:
    """The Tulu concatenation of ``messages`` (not stripped; the full example text is ``.strip()``-ped)."""
    text = ""
    for message in messages:
        role = message["role"]
        if role not in TULU_ROLE_HEADERS:
            raise ValueError(f"invalid role {role!r}; expected one of {list(TULU_ROLE_HEADERS)}")
        text += TULU_ROLE_HEADERS[role] + message["content"].strip()
        text += (eos_token + "\n") if role == "assistant" else "\n"
    return text


def _encode_tulu(messages, tokenizer, max_seq_length: int) -> dict[str, list[int]]:
    eos = _eos_token(tokenizer)
    input_ids = _token_ids(tokenizer, tulu_text(messages, eos).strip(), max_seq_length)
    labels = list(input_ids)
    for idx, message in enumerate(messages):
        if message["role"] == "assistant":
            continue
        start = 0 if idx == 0 else len(_token_ids(tokenizer, tulu_text(messages[:idx], eos), max_seq_length))
        so_far = tulu_text(messages[: idx + 1], eos)
        if idx + 1 < len(messages) and messages[idx + 1]["role"] == "assistant":
            so_far += TULU_ROLE_HEADERS["assistant"]  # the header is context, not something to learn
        end = len(_token_ids(tokenizer, so_far, max_seq_length))
        _mask(labels, start, end)
        if end >= max_seq_length:
            break
    return _result(input_ids, labels)


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _encode_chat_template(messages, tokenizer, max_seq_length: int) -> dict[str, list[int]]:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_format='tokenizer' needs a tokenizer with a chat_template; "
                         "use chat_format='tulu' or set tokenizer.chat_template")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]

    def render(msgs, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation_prompt)

    def boundary(prefix_text: str) -> int:
        """Number of tokens of the full conversation fully determined by ``prefix_text``."""
        if not full_text.startswith(prefix_text):
            raise ValueError("the tokenizer's chat template is not prefix-consistent (rendering the first messages "
                             "of a conversation does not give a prefix of the whole conversation), so assistant "
                             "spans cannot be located; use chat_format='tulu'")
        # Chat templates carry their own special tokens (bos etc.), hence add_special_tokens=False, as
        # apply_chat_template(tokenize=True) does. The common prefix handles a BPE merge across the boundary.
        return _common_prefix_length(_token_ids(tokenizer, prefix_text, add_special_tokens=False), full_ids)

    full_text = render(messages, False)
    full_ids = _token_ids(tokenizer, full_text, add_special_tokens=False)
    labels = [IGNORE_INDEX] * len(full_ids)
    for idx, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if idx == 0:
            try:
                context = render([], True)
            except Exception:  # some templates refuse an empty conversation; nothing precedes the reply then
                context = ""
        else:
            context = render(messages[:idx], True)
        start = boundary(context)
        end = boundary(render(messages[: idx + 1], False))
        while end > start and tokenizer.decode([full_ids[end - 1]]).strip() == "":
            end -= 1  # keep the end-of-turn token, not the whitespace a template puts after it
        labels[start:end] = full_ids[start:end]
    return _result(full_ids[:max_seq_length], labels[:max_seq_length])


def encode_with_messages_format(example: dict[str, Any], tokenizer, max_seq_length: int,
                                chat_format: str = "tulu") -> dict[str, list[int]]:
    """Encode ``{"messages": [...]}`` in ``chat_format`` (``"tulu"`` or ``"tokenizer"``), see the module doc."""
    messages = example["messages"]
    if not messages:
        raise ValueError("'messages' is empty")
    if chat_format == "tulu":
        return _encode_tulu(messages, tokenizer, max_seq_length)
    if chat_format == "tokenizer":
        return _encode_chat_template(messages, tokenizer, max_seq_length)
    raise ValueError(f"unknown chat_format {chat_format!r}; choose one of {list(CHAT_FORMATS)}")


def encode_example(example: dict[str, Any], tokenizer, max_seq_length: int,
                   chat_format: str = "tulu") -> dict[str, list[int]]:
    """Encode a record of either format (dispatching on a non-null ``messages`` field)."""
    if example.get("messages") is not None:
        return encode_with_messages_format(example, tokenizer, max_seq_length, chat_format)
    return encode_with_prompt_completion_format(example, tokenizer, max_seq_length)
