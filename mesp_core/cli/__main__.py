"""`python -m mesp_core.cli` is the `mesp` command."""

import sys

from mesp_core.cli import main

sys.exit(main())
