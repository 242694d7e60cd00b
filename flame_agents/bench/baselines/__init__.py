"""Baselines measured in the same run as our figures: the gRPC floor, a Ray actor, flamepy."""
