"""The host agent (``allotment agent``): ``machine`` reads what this machine has (``/proc``,
``/sys``, ``statvfs``); ``runner`` publishes it to placement, reports and heartbeats to the
scheduler."""
