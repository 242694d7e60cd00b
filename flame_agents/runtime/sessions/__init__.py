"""The Flame session manager: applications, sessions and tasks, and who runs them.

* ``_frontend``, ``_task_rpcs`` and ``_checks``: the gRPC ``flame.v1.Frontend`` servicer, its
  task RPCs, and its argument checks; ``_waits``: a task call's waits for the task to change;
* ``_board`` and ``_views``: the TaskBoard, the one owner of session and task state (a store
  write, then its wake-up of watchers and the scheduler), and its view of a session;
  ``_recent`` and ``_watchers``: its memory of the tasks written last, and their waiters;
* ``_store``, ``_database`` and ``_rows``: durable sqlite state (applications, sessions, tasks,
  events): the reads and writes, the database's opening and transactions, the tables;
* ``_scheduler``, ``_options`` and ``_resources``: how many instances each session gets, within
  the runtime's limits and the machine's capacity;
* ``_worker`` and ``_instances``: one instance's life and its tasks' way through the board;
* ``_cancel``: stopping a running task a client cancelled;
* ``_apps`` and ``_builtins``: application rules and defaults, the built-in applications;
* ``_protos``: wire messages from stored rows; ``_malformed``: answers to undecodable requests.

It imports no other wing: ``Runtime.start()`` hands the scheduler its way to launch
instances (``runtime._launch.Launch``).
"""
