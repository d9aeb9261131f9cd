"""Summarize HumanEval results of finetuning runs into a table and a CSV: pass@1 from
``<run>/codex_results/pass1/metrics.json`` (temperature 0.1) and pass@10 from ``codex_results/pass10/`` (0.8).

    python codex_summarize.py --ts -1 --output_root ./output --csv codex_summary.csv --plot codex.png

See ``python codex_summarize.py --help``; the logic lives in ``open_instruct/summarize.py``.
"""

from open_instruct.summarize import CODEX, main

if __name__ == "__main__":
    main(CODEX)
