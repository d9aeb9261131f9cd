"""``python -m open_instruct.mos.export``: the export command's former name, kept working (see
``open_instruct.export``, its home now). Not imported by ``open_instruct.mos``, so running it as a module does not
warn that it was already imported."""

import sys

from open_instruct.export import main

if __name__ == "__main__":
    sys.exit(main())
