"""The object cache: Flame's Arrow Flight cache server, over durable files.

* ``server``: the Arrow Flight server (the commands and rejections of ``_wire.cache``);
* ``object_store``: objects and their patches, versions and conditional writes;
* ``values``: what the store is handed and answers (uploads, read replies, object facts);
* ``layout``: where each object's files live, and their folders;
* ``replay``: an object rebuilt from its base file and journal (and the repairs at load);
* ``files`` and ``journal``: atomic object files and the append-only patch journal;
* ``lru``: the in-memory cache of loaded objects.

It imports neither the session manager nor the launcher.
"""
