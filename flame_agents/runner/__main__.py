"""``python -m flame_agents.runner``: the service a runner's application runs on its instances."""

from flame_agents.runner._server import main

if __name__ == "__main__":
    main()
