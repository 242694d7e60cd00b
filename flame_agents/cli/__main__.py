"""``python -m flame_agents.cli``: the same as the ``flame-agents`` console script."""

import sys

from flame_agents.cli import main

sys.exit(main())
