"""`python -m app.ops.cli …`: the same as the `taskbench` command."""

import sys

from app.ops.cli import main

sys.exit(main())
