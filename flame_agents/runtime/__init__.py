"""The embedded runtime: one process serving the Flame Frontend and the object cache locally.

Run it with ``python -m flame_agents.runtime --home DIR`` (see :mod:`flame_agents.runtime.__main__`)
or start it from code with :mod:`flame_agents.embedded`. Modules:

* ``__main__``: command line and exit codes;
* ``_server``: assembly and lifecycle (lock, store, cache, Frontend, scheduler, runtime.json);
* ``_home``: home folder layout and the one-runtime-per-home lock;
* ``_store``: durable sqlite state (applications, sessions, tasks, events);
* ``_frontend``: the gRPC ``flame.v1.Frontend`` servicer;
* ``_apps``: application name/spec rules, defaults, built-in applications;
* ``_protos``: wire messages from stored rows, and the node description;
* ``_scheduler``: dispatch of tasks and sizing of each session's instances;
* ``_resources``: the machine's capacity and the ledger of what instances hold;
* ``_instance``: launching and driving one service process (Flame's host shim);
* ``flmping``: the built-in ping service;
* ``cache_server`` (+ its store modules): the Arrow Flight object cache.
"""
