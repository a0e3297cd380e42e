"""One scheduling cycle, in three parts: ``driver`` (``Cycle``: filters, consumption,
alternates, explanations), ``ranking`` (weights and the order to try hosts in) and
``view`` (the per-host state plugins read through the framework's ``HostView``)."""
