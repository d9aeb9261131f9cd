"""Summarize TyDiQA results of finetuning runs (``<run>/tydiqa_results/metrics.json``) into a table and a CSV.

    python tydiqa_summarize.py --ts -1 --output_root ./output --csv tydiqa_summary.csv --plot tydiqa.png

See ``python tydiqa_summarize.py --help``; the logic lives in ``open_instruct/summarize.py``.
"""

from open_instruct.summarize import TYDIQA, main

if __name__ == "__main__":
    main(TYDIQA)
