"""The embedded runtime: one process serving the Flame Frontend and the object cache locally.

Run it with ``python -m flame_agents.runtime --home DIR`` (see :mod:`flame_agents.runtime.__main__`)
or start it from code with :mod:`flame_agents.embedded`. Three wings, two of them servers:

* ``sessions``: the Flame session manager (Frontend, TaskBoard, scheduling, the sqlite store);
* ``launch``: starting and driving service processes as Flame's host shim does (instances,
  prestarted interpreters, the package installer);
* ``cache``: the Arrow Flight object cache (server, object store, journal, LRU).

No wing imports another. The modules at this level are shared by the wings or put them
together:

* ``__main__``: command line and exit codes;
* ``_server``: ``Runtime``, its start and stop (lock, store, cache, Frontend, scheduler,
  runtime.json);
* ``_launch``: the contract between the session manager and the launcher (``LaunchSpec``, the
  ``ServiceProcess`` protocol, how a launch fails);
* ``_home``: home folder layout, the one-runtime-per-home lock, the endpoints of earlier runs;
* ``_auth``: the shared token and TLS material of both servers;
* ``_parent_watch``: stopping with the process that started the runtime;
* ``flmping`` and ``flmexec``: the services of the built-in applications of those names.
"""
