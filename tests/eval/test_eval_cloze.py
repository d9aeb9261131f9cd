"""The cloze evaluator: predictions from an unbatched float64 reference, one-line errors, results never replaced."""

import json

import pytest
import torch

from eval.cloze.run_eval import main


def _logprob(model, tok, context, continuation):
    ctx, full = tok(context).input_ids, tok(context + continuation).input_ids
    n = len(ctx)
    while full[:n] != ctx[:n]:
        n -= 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].double(), -1)
    return sum(logp[i - 1, full[i]].item() for i in range(n, len(full)))


def test_arc_predictions_match_reference_and_results_are_kept(tmp_path, tiny_checkpoint, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [{"id": i, "question": q, "choices": c, "gold": g} for i, (q, c, g) in enumerate([
        ("What colour is the sky?", ["blue", "a dog", "seven"], 0),
        ("Which is a number?", ["cat", "twelve"], 1),
        ("Pick a fruit.", ["apple", "chair", "road", "sun"], 2)])]
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--task", "arc_easy", "--data_file", str(data), "--model_name_or_path", str(tiny_checkpoint),
            "--save_dir", str(tmp_path / "out"), "--eval_batch_size", "2"]
    metrics = main(args)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    hits = 0
    for row, pred in zip(rows, preds):
        ref = [_logprob(model, tok, f"Question: {row['question']}\nAnswer:", " " + c) for c in row["choices"]]
        assert pred["logprobs"] == pytest.approx(ref, abs=1e-4)
        assert pred["pred"] == max(range(len(ref)), key=ref.__getitem__)
        hits += pred["pred"] == row["gold"]
    assert metrics["acc"] == hits / 3 and metrics["n"] == 3
    before = (tmp_path / "out" / "metrics.json").read_text()
    with pytest.raises(SystemExit) as exc:  # the same --save_dir again: refused, results kept
        from eval.cli import run_cli

        run_cli(main, args)
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "metrics.json").read_text() == before
    assert main([*args, "--overwrite"])["n"] == 3


def test_bad_mmlu_answer_is_one_line(tmp_path, capsys):
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    (tmp_path / "mmlu" / "test" / "astronomy_test.csv").write_text("What is a star?,gas,rock,ice,wood,AB\n")
    from eval.cli import run_cli

    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["--task", "mmlu", "--data_dir", str(tmp_path / "mmlu"), "--model_name_or_path", "unused",
                       "--save_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert "astronomy_test.csv row 1: answer must be one of A, B, C, D, got 'AB'" in err[0]


@pytest.mark.parametrize("module", ["eval.gsm.run_eval", "eval.bbh.run_eval", "eval.codex_humaneval.run_eval",
                                    "eval.cloze.run_eval"])
def test_generative_evaluators_keep_earlier_results(tmp_path, capsys, module):
    import importlib

    from eval.cli import run_cli

    main_fn = importlib.import_module(module).main
    extra = {"eval.cloze.run_eval": ["--task", "mmlu", "--data_dir", str(tmp_path / "nothing")],
             "eval.codex_humaneval.run_eval": ["--data_file", str(tmp_path / "nothing.jsonl.gz")]}.get(
        module, ["--data_dir", str(tmp_path / "nothing")])
    out = tmp_path / "results"
    out.mkdir()
    (out / "metrics.json").write_text('{"kept": 1}')
    with pytest.raises(SystemExit) as exc:
        run_cli(main_fn, [*extra, "--model_name_or_path", "unused", "--save_dir", str(out)])
    assert exc.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == '{"kept": 1}'
    (out / "completed").touch()  # a training run directory is refused even with --overwrite
    with pytest.raises(SystemExit):
        run_cli(main_fn, [*extra, "--model_name_or_path", "unused", "--save_dir", str(out), "--overwrite"])
    assert "is a training run directory" in capsys.readouterr().err
