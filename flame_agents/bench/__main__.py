"""``python -m flame_agents.bench``: the suite without the CLI (same options as the verb)."""

import sys

from flame_agents.bench.cli import main

sys.exit(main())
