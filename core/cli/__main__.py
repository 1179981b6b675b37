"""``python -m emberllm.cli``: the same as the ``emberllm`` console script."""

import sys

from emberllm.cli import main

sys.exit(main())
