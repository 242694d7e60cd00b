"""Command line of flame-agents, installed as both ``flame-agents`` and ``flmctl``."""
