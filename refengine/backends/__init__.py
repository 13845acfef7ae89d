"""Storage backends other than the in-memory engine, behind the same methods.

Each backend answers the engine's request models with the engine's response models,
and takes its rules from :mod:`refengine.semantics` (the same checks, the same
prepared rows); only the execution differs. They live in optional extras: the core
never imports this package.

* :mod:`refengine.backends.clickhouse` — ClickHouse, embedded (``chdb``) or a server
  (``clickhouse-connect``); the ``clickhouse`` extra.
"""
