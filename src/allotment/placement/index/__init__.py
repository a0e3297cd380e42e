"""The in-memory capacity index (``capacity``), how it is read from SQL (``loader``) and
kept in step with the ledger (``sync.CapacityIndex``, a listener of the unit of work)."""
