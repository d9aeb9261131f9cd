"""Instruction templates that turn (instruction, input, output) triples into prompt/completion pairs.

These are the weighted templates of open-instruct (inherited by the MoS/PRoLoRA harness): SuperNI,
Code Alpaca and the other instruction datasets are converted with them by ``reformat_datasets.py``.
The strings and weights are kept verbatim because they determine the training text (including the
original's "Plase" typo); changing one changes the data a reproduction trains on.

Randomness comes from the module-level :mod:`random` generator, exactly like the original, so that
``random.seed(42)`` before a conversion reproduces the original's template choices.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

# (prompt template, completion template, sampling weight); the weights of each list sum to 1.
TEMPLATES_WITH_INPUT: list[tuple[str, str, float]] = [
    ("{instruction}\n\n{input}\n\n", "{output}", 0.2),
    ("{instruction}\n{input}\n\n", "{output}", 0.1),
    ("{instruction}\n{input}\n", "{output}", 0.1),
    ("{instruction}\n\nInput: {input}\n\nOutput:", "{output}", 0.05),
    ("{instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("{instruction}\n{input}\n\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAdditional Context:\n{input}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\n", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("{instruction}\n\nNow complete the following instance -\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Instruction:{instruction}\n\nInput: {input}\n\n", "{output}", 0.05),
    # The Alpaca template.
    ("Below is an instruction that describes a task, paired with an input that provides further context. "
     "Write a response that appropriately completes the request.\n\n"
     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:", "{output}", 0.1),
]

TEMPLATES_WITHOUT_INPUT: list[tuple[str, str, float]] = [
    ("{instruction}\n\n", "{output}", 0.2),
    ("{instruction}\n", "{output}", 0.1),
    ("{instruction}", "\n{output}", 0.1),
    ("{instruction} Output:", "{output}", 0.05),
    ("{instruction}\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\n\n", "{output}", 0.05),
    ("Instruction: {instruction}\n", "{output}", 0.05),
    ("Instruction: {instruction}\nOutput:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n", "{output}", 0.05),
    ("Can you help with this?\n\n{instruction}\n", "{output}", 0.05),
    ("Plase answer the following request: {instruction}\nAnswer:", "{output}", 0.05),  # sic, as in the original
    ("Tell me how would you respond to the following request.\n{instruction}\n", "{output}", 0.05),
    # The Alpaca template (no-input variant).
    ("Write a response that appropriately completes the request.\n\n"
     "### Instruction:\n{instruction}\n\n### Response:", "{output}", 0.1),
]


def _pick(templates: list[tuple[str, str, float]]) -> tuple[str, str]:
    """Draw one (prompt, completion) template pair by weight from the global random generator."""
    prompt_template, completion_template, _ = random.choices(templates, weights=[w for _, _, w in templates])[0]
    return prompt_template, completion_template


def _with_eos(completion: str, eos_token: str | None) -> str:
    return completion + eos_token if eos_token else completion


def _require_str(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}: {value!r}")
    return value


def encode_instruction_example(instruction: str, input: str | None, output: str, random_template: bool = True,
                               eos_token: str | None = None) -> dict[str, str]:
    """Format one instruction example as ``{"prompt", "completion"}``.

    With ``random_template`` a template is drawn by weight (from the with-input list when ``input`` is
    non-blank, else from the without-input list); otherwise the prompt is ``instruction\\n\\n[input\\n\\n]``.
    Every field is ``.strip()``-ped before formatting. ``eos_token``, if given, is appended to the completion.
    """
    instruction = _require_str("instruction", instruction).strip()
    output = _require_str("output", output).strip()
    has_input = input is not None and _require_str("input", input).strip() != ""
    if random_template:
        if has_input:
            prompt_template, completion_template = _pick(TEMPLATES_WITH_INPUT)
            prompt = prompt_template.format(instruction=instruction, input=input.strip())
        else:
            prompt_template, completion_template = _pick(TEMPLATES_WITHOUT_INPUT)
            prompt = prompt_template.format(instruction=instruction)
        completion = completion_template.format(output=output)
    else:
        prompt = instruction + "\n\n" + (input.strip() + "\n\n" if has_input else "")
        completion = output
    return {"prompt": prompt, "completion": _with_eos(completion, eos_token)}


def encode_few_shot_example(instruction: str, examplars: Iterable[Mapping[str, str]], input: str, output: str,
                            eos_token: str | None = None) -> dict[str, str]:
    """Format a few-shot example: the definition, then ``Input:/Output:`` demonstrations, then the query.

    The prompt is ``"{def}\\n\\n" + "Input:\\n{x}\\nOutput:\\n{y}\\n\\n" * k + "Input:\\n{input}\\nOutput:\\n"``
    and the completion is the stripped ``output`` (plus ``eos_token`` if given). Each examplar needs
    string ``input`` and ``output`` keys (SuperNI "Positive Examples" have them).
    """
    parts = [_require_str("instruction", instruction).strip() + "\n\n"]
    for i, examplar in enumerate(examplars):
        if not isinstance(examplar, Mapping) or not {"input", "output"} <= set(examplar):
            raise ValueError(f"examplar {i} must be a mapping with 'input' and 'output' keys, got {examplar!r}")
        parts.append("Input:\n" + _require_str(f"examplar {i} input", examplar["input"]).strip() + "\n")
        parts.append("Output:\n" + _require_str(f"examplar {i} output", examplar["output"]).strip() + "\n\n")
    parts.append("Input:\n" + _require_str("input", input).strip() + "\n")
    parts.append("Output:\n")
    return {"prompt": "".join(parts), "completion": _with_eos(_require_str("output", output).strip(), eos_token)}
