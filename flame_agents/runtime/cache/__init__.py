"""The object cache: Flame's Arrow Flight cache server, over durable files.

* ``server``: the Arrow Flight server (the commands and rejections of ``_wire.cache``);
* ``object_store``: objects and their patches, versions and conditional writes;
* ``files`` and ``journal``: atomic object files and the append-only patch journal;
* ``lru``: the in-memory cache of loaded objects.

It imports neither the session manager nor the launcher.
"""
