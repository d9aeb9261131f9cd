"""Summarize BBH results of finetuning runs (``<run>/bbh_results/{cot,no_cot}/metrics.json``) into a table and a CSV.

    python bbh_summarize.py --ts -1 --output_root ./output --csv bbh_summary.csv --plot bbh.png

Columns BBH_cot_em and BBH_no_cot_em (average exact match over tasks) and ``dataset``: the data set's label
from the evaluator's dataset.json, "BBH (rebuilt from BIG-bench)" when the data was built offline from
BIG-bench (not comparable with published BBH numbers). See ``python bbh_summarize.py --help``; the logic
lives in ``open_instruct/summarize.py``.
"""

from open_instruct.summarize import BBH, main

if __name__ == "__main__":
    main(BBH)
