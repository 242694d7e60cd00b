"""The launcher: starting and driving service processes, as Flame's host shim does.

* ``_instance``: one service process bound to one session, driven over its Unix socket (the
  Instance RPCs); ``_launched_process``: that process started, waited for until ready, and ended;
* ``_prestart`` and ``_spare``: warm interpreters handed launches of the runtime's own Python;
* ``_spawn``: command resolution and the readiness pipe;
* ``_installer``, ``_package_fetch`` and ``_pip_install``: an application's package fetched,
  unpacked and installed (pip into its venv for ``python``) before its instances start.

It implements ``runtime._launch`` (what one launch needs, and how it fails) and imports
neither the session manager nor the object cache.
"""
