"""The weighted instruction templates and the few-shot format of open-instruct."""

import random
from collections import Counter

import pytest

from open_instruct.instruction_encode_templates import (
    TEMPLATES_WITH_INPUT,
    TEMPLATES_WITHOUT_INPUT,
    encode_few_shot_example,
    encode_instruction_example,
)

ALPACA_PREFIX = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                 "Write a response that appropriately completes the request.\n\n")


def test_template_tables():
    assert len(TEMPLATES_WITH_INPUT) == 14 and len(TEMPLATES_WITHOUT_INPUT) == 14
    for table in (TEMPLATES_WITH_INPUT, TEMPLATES_WITHOUT_INPUT):
        assert sum(w for _, _, w in table) == pytest.approx(1.0)
    assert TEMPLATES_WITH_INPUT[0] == ("{instruction}\n\n{input}\n\n", "{output}", 0.2)
    alpaca = TEMPLATES_WITH_INPUT[-1]
    assert alpaca[0] == ALPACA_PREFIX + "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    assert alpaca[2] == 0.1
    assert all("{input}" in t for t, _, _ in TEMPLATES_WITH_INPUT)
    assert not any("{input}" in t for t, _, _ in TEMPLATES_WITHOUT_INPUT)


def test_fixed_template_and_eos():
    assert encode_instruction_example(" Add. ", " 1 2 ", " 3 ", random_template=False) == {
        "prompt": "Add.\n\n1 2\n\n", "completion": "3"}
    assert encode_instruction_example("Add.", "  ", "3", random_template=False, eos_token="</s>") == {
        "prompt": "Add.\n\n", "completion": "3</s>"}


def test_random_templates_follow_the_weights():
    random.seed(0)
    counts = Counter()
    prompts = {t.format(instruction="Do it.", input="x"): t for t, _, _ in TEMPLATES_WITH_INPUT}
    for _ in range(4000):
        ex = encode_instruction_example("Do it.", "x", "y")
        counts[prompts[ex["prompt"]]] += 1
        assert ex["completion"] == "y"
    assert counts[TEMPLATES_WITH_INPUT[0][0]] / 4000 == pytest.approx(0.2, abs=0.03)
    assert counts[TEMPLATES_WITH_INPUT[-1][0]] / 4000 == pytest.approx(0.1, abs=0.025)
    assert len(counts) == 14
    random.seed(0)
    no_input = {t.format(instruction="Do it."): c for t, c, _ in TEMPLATES_WITHOUT_INPUT}
    ex = encode_instruction_example("Do it.", None, "y")
    assert ex["prompt"] in no_input and ex["completion"] == no_input[ex["prompt"]].format(output="y")


def test_few_shot_format():
    ex = encode_few_shot_example(" Define. ", [{"input": " a ", "output": " A "}, {"input": "b", "output": "B"}],
                                 " c ", " C ", eos_token="</s>")
    assert ex == {"prompt": "Define.\n\nInput:\na\nOutput:\nA\n\nInput:\nb\nOutput:\nB\n\nInput:\nc\nOutput:\n",
                  "completion": "C</s>"}
    assert encode_few_shot_example("D", [], "c", "C")["prompt"] == "D\n\nInput:\nc\nOutput:\n"
    with pytest.raises(ValueError, match="examplar 0"):
        encode_few_shot_example("D", [{"input": "a"}], "c", "C")
