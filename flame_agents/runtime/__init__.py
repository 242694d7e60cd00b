"""The embedded runtime: one process serving the Flame Frontend and the object cache locally.

Run it with ``python -m flame_agents.runtime --home DIR`` (see :mod:`flame_agents.runtime.__main__`)
or start it from code with :mod:`flame_agents.embedded`. Modules: ``_store`` (sqlite state),
``_frontend`` (the gRPC Frontend servicer), ``_scheduler`` (dispatch and instance sizing),
``_instance`` (launching and driving one service process), ``_server`` (assembly and lifecycle),
``flmping`` (the built-in ping service), ``cache_server`` (the Arrow Flight object cache).
"""
