"""Everything that exists only for speed: the store's query indexes and the folds
that read them (``fold(plan, snapshot)``), checked against the reference folds of
:mod:`refengine.semantics` by property tests and by the case catalogue."""
