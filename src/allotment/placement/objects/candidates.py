"""Allocation candidates: the search (and its explanation when nothing is found) over the
capacity index, with the operator's settings for limits, order and permutations."""

from __future__ import annotations

from dataclasses import dataclass

from allotment.placement.candidates import CandidateSet
from allotment.placement.candidates import resolve as candidate_resolve
from allotment.placement.candidates.cap import capped_limit
from allotment.placement.candidates.explain import Step as ExplainStep
from allotment.placement.index.sync import CapacityIndex
from allotment.placement.model import CandidateRequest
from allotment.placement.store.catalog import Catalog


@dataclass
class CandidateSearch:
    """The candidate search of one service; its settings may be changed while it serves."""

    catalog: Catalog
    index: CapacityIndex
    randomize: bool = False
    max_candidates: int = 0  # [limits] max_allocation_candidates; 0: uncapped
    all_permutations: bool = False

    def find(self, request: CandidateRequest) -> CandidateSet:
        """Every way to satisfy ``request`` now (or ``request.limit`` of them, spread over
        trees), with summaries of the providers involved."""
        limit = capped_limit(request.limit, self.max_candidates)
        query = candidate_resolve.query_of(
            self.catalog,
            request,
            limit=limit,
            randomize=self.randomize,
            distinct=not self.all_permutations,
        )
        return self.index.candidates(
            query,
            class_name=self.catalog.resource_classes.name_of,
            trait_name=self.catalog.traits.name_of,
        )

    def explain(self, request: CandidateRequest) -> tuple[int, list[ExplainStep]]:
        """Why ``request`` finds no candidate: trees considered, then how many each
        constraint left (see ``candidates.explain``)."""
        query = candidate_resolve.query_of(self.catalog, request, limit=None, randomize=False)
        return self.index.explain(query, self.catalog.traits.name_of)
