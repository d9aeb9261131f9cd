"""Summarize MMLU results of finetuning runs (``<run>/mmlu_results/metrics.json``) into a table and a CSV.

    python mmlu_summarize.py --ts -1 --output_root ./output --csv mmlu_summary.csv --plot mmlu.png

See ``python mmlu_summarize.py --help``; the logic lives in ``open_instruct/summarize.py``.
"""

from open_instruct.summarize import MMLU, main

if __name__ == "__main__":
    main(MMLU)
