"""Summarize GSM8K results of finetuning runs (``<run>/gsm_results/metrics.json``) into a table and a CSV.

    python gsm_summarize.py --ts -1 --output_root ./output --csv gsm_summary.csv --plot gsm.png

See ``python gsm_summarize.py --help``; the logic lives in ``open_instruct/summarize.py``.
"""

from open_instruct.summarize import GSM, main

if __name__ == "__main__":
    main(GSM)
