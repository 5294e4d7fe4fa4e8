"""`python -m mesp_operator [flags]`: the same as `mesp operator [flags]`."""

import sys

from mesp_operator.main import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
