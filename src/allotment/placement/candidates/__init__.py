"""Allocation-candidate search over the capacity index (flat, nested, sharing, granular)."""

from allotment.placement.candidates.engine import Need, Query, search
from allotment.placement.candidates.result import CandidateSet, collect

__all__ = ["CandidateSet", "Need", "Query", "collect", "search"]
