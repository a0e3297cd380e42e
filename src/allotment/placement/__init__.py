"""Placement: the resource ledger (providers, inventories, traits, aggregates, allocations)."""
