"""``python -m open_instruct.replicate ...`` runs ``python -m replication ...`` (the same arguments and exit status).

The one module of the core that imports the replication harness (tests/test_import_graph.py allows exactly this one).
"""

import sys

from replication.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
