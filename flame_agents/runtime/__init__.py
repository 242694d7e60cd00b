"""The embedded runtime: one process serving the Flame Frontend and the object cache locally.

Run it with ``python -m flame_agents.runtime --home DIR`` (see :mod:`flame_agents.runtime.__main__`)
or start it from code with :mod:`flame_agents.embedded`. Modules:

* ``__main__``: command line and exit codes;
* ``_server``: ``Runtime``, its start and stop (lock, store, cache, Frontend, scheduler,
  runtime.json);
* ``_home``: home folder layout and the one-runtime-per-home lock;
* ``_board``: the TaskBoard, the one owner of session and task state (write, then wake-up);
* ``_store`` and ``_rows``: durable sqlite state (applications, sessions, tasks, events);
* ``_frontend`` and ``_checks``: the gRPC ``flame.v1.Frontend`` servicer and its checks;
* ``_apps``: application name/spec rules, defaults, built-in applications;
* ``_protos``: wire messages from stored rows, and the node description;
* ``_scheduler`` and ``_options``: sizing of each session's instances, and its options;
* ``_worker``: one instance's life and its tasks' way through the board;
* ``_resources``: the machine's capacity and the ledger of what instances hold;
* ``_instance``: launching and driving one service process (Flame's host shim);
* ``_prestart``: prestarted interpreters handed to launches of the runtime's Python;
* ``flmping``: the built-in ping service;
* ``cache_server`` (+ its store modules): the Arrow Flight object cache.
"""
