"""allotment: a fast, explainable cloud scheduler and Placement-compatible resource ledger."""

__version__ = "0.1.0"
