"""The object cache protocol, the one vocabulary our cache client and cache server share.

Flame 0.6's Arrow Flight conventions (flame-wire §4) and our extensions to them:

- :mod:`.keys`: the key grammar (``<app>/<session>/<object_id>``, prefixes, ``<app>/*``);
- :mod:`.schemas`: the upload and reply schemas and their metadata;
- :mod:`.commands`: do_put commands (``PATCH`` and our conditional ``PATCHIF``/``PUTIF``),
  tickets, the DELETE action and the PutResult document;
- :mod:`.rejections`: structured rejections (a code and fields in the Flight error's
  ``extra_info``) and the client's mapping of every failure to :mod:`flame_agents.errors`;
- :mod:`.aliases`: the earlier endpoints of a cache (an action of ours), so references made
  before a restart on new ports still resolve.
"""
