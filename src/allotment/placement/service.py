"""The Placement domain operations: a thin facade over the per-resource modules in
``objects/``. The HTTP API calls these; so does the scheduler when placement is embedded in
the same process.

Every write runs in the unit of work (``store.unit_of_work``): one SQL transaction that
records the change and, after commit, tells the listeners (the capacity index, injected
here) exactly what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from allotment.db.database import Database
from allotment.placement.candidates import CandidateSet
from allotment.placement.candidates.explain import Step as ExplainStep
from allotment.placement.index.sync import CapacityIndex
from allotment.placement.model import (
    Allocation,
    CandidateRequest,
    CatalogEntry,
    ConsumerWrite,
    Inventory,
    Provider,
    RequestGroup,
    Usage,
)
from allotment.placement.objects import aggregates as aggregate_objects
from allotment.placement.objects import (
    allocations,
    catalog,
    inventories,
    providers,
    reshaper,
    usages,
)
from allotment.placement.objects.base import UNSET, Ledger
from allotment.placement.objects.candidates import CandidateSearch
from allotment.placement.store.catalog import Catalog
from allotment.placement.store.unit_of_work import AfterCommit, UnitOfWork, WriteTxn

__all__ = ["UNSET", "PlacementService"]


class PlacementService:
    """Placement's public operations, one method per API action."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog | None = None,
        *,
        index: CapacityIndex | None = None,
        randomize_candidates: bool = False,
        max_candidates: int = 0,
        all_permutations: bool = False,
    ) -> None:
        self.db = db
        self.catalog = catalog or Catalog(db)
        # Reads that scan capacity are served from this process's index (see index/), which
        # follows every write as a listener of the unit of work.
        self.index = index or CapacityIndex(db, self.catalog)
        self.uow = UnitOfWork(db, self.catalog, [self.index])
        self._ledger = Ledger(db, self.catalog, self.uow)
        self._candidates = CandidateSearch(
            self.catalog,
            self.index,
            randomize=randomize_candidates,
            max_candidates=max_candidates,
            all_permutations=all_permutations,
        )

    # The candidate settings, changeable while serving (tests and benchmarks flip them).
    @property
    def randomize_candidates(self) -> bool:
        return self._candidates.randomize

    @randomize_candidates.setter
    def randomize_candidates(self, value: bool) -> None:
        self._candidates.randomize = value

    @property
    def max_candidates(self) -> int:
        return self._candidates.max_candidates

    @max_candidates.setter
    def max_candidates(self, value: int) -> None:
        self._candidates.max_candidates = value

    @property
    def all_permutations(self) -> bool:
        return self._candidates.all_permutations

    @all_permutations.setter
    def all_permutations(self, value: bool) -> None:
        self._candidates.all_permutations = value

    def add_listener(self, listener: Callable[[WriteTxn], None]) -> None:
        """Call ``listener`` after every committed write of this process."""
        self.uow.add_listener(AfterCommit(listener))

    # -- resource providers ---------------------------------------------------------------

    def get_provider(self, uuid: str) -> Provider:
        return providers.get(self._ledger, uuid)

    def list_providers(
        self,
        *,
        name: str | None = None,
        uuid: str | None = None,
        in_tree: str | None = None,
        having: RequestGroup | None = None,
    ) -> list[Provider]:
        return providers.list_providers(
            self._ledger, self.index, name=name, uuid=uuid, in_tree=in_tree, having=having
        )

    def create_provider(
        self, *, name: str, uuid: str | None = None, parent_uuid: str | None = None
    ) -> Provider:
        return providers.create(self._ledger, name=name, uuid=uuid, parent_uuid=parent_uuid)

    def update_provider(
        self, uuid: str, *, name: str, parent_uuid: str | None = UNSET, allow_reparenting: bool
    ) -> Provider:
        return providers.update(
            self._ledger,
            uuid,
            name=name,
            parent_uuid=parent_uuid,
            allow_reparenting=allow_reparenting,
        )

    def delete_provider(self, uuid: str) -> None:
        providers.delete(self._ledger, uuid)

    # -- inventories ----------------------------------------------------------------------

    def get_inventories(self, uuid: str) -> tuple[Provider, dict[str, Inventory]]:
        return inventories.get(self._ledger, uuid)

    def change_inventories(
        self,
        uuid: str,
        *,
        generation: int | None,
        put: dict[str, Inventory] | None = None,
        delete: set[str] | None = None,
        replace_all: bool = False,
        create_only: bool = False,
        update_only: bool = False,
    ) -> tuple[Provider, dict[str, Inventory]]:
        return inventories.change(
            self._ledger,
            uuid,
            generation=generation,
            put=put,
            delete=delete,
            replace_all=replace_all,
            create_only=create_only,
            update_only=update_only,
        )

    # -- resource classes -----------------------------------------------------------------

    def list_resource_classes(self) -> list[CatalogEntry]:
        return catalog.list_resource_classes(self._ledger)

    def get_resource_class(self, name: str) -> CatalogEntry:
        return catalog.get_resource_class(self._ledger, name)

    def create_resource_class(self, name: str) -> CatalogEntry:
        return catalog.create_resource_class(self._ledger, name)

    def ensure_resource_class(self, name: str) -> tuple[CatalogEntry, bool]:
        return catalog.ensure_resource_class(self._ledger, name)

    def rename_resource_class(self, name: str, new_name: str) -> CatalogEntry:
        return catalog.rename_resource_class(self._ledger, name, new_name)

    def delete_resource_class(self, name: str) -> None:
        catalog.delete_resource_class(self._ledger, name)

    # -- traits ---------------------------------------------------------------------------

    def list_traits(
        self,
        *,
        names: Collection[str] | None = None,
        prefix: str | None = None,
        associated: bool | None = None,
    ) -> list[CatalogEntry]:
        return catalog.list_traits(self._ledger, names=names, prefix=prefix, associated=associated)

    def get_trait(self, name: str) -> CatalogEntry:
        return catalog.get_trait(self._ledger, name)

    def ensure_trait(self, name: str) -> tuple[CatalogEntry, bool]:
        return catalog.ensure_trait(self._ledger, name)

    def delete_trait(self, name: str) -> None:
        catalog.delete_trait(self._ledger, name)

    def get_provider_traits(self, uuid: str) -> tuple[Provider, list[CatalogEntry]]:
        return catalog.get_provider_traits(self._ledger, uuid)

    def set_provider_traits(
        self, uuid: str, names: Sequence[str], *, generation: int | None
    ) -> tuple[Provider, list[CatalogEntry]]:
        return catalog.set_provider_traits(self._ledger, uuid, names, generation=generation)

    # -- aggregates -----------------------------------------------------------------------

    def get_provider_aggregates(self, uuid: str) -> tuple[Provider, list[str]]:
        return aggregate_objects.get_provider_aggregates(self._ledger, uuid)

    def set_provider_aggregates(
        self, uuid: str, aggregates: Sequence[str], *, generation: int | None
    ) -> tuple[Provider, list[str]]:
        return aggregate_objects.set_provider_aggregates(
            self._ledger, uuid, aggregates, generation=generation
        )

    def aggregate_members(self, aggregate_uuid: str) -> set[str]:
        return aggregate_objects.members(self.index, aggregate_uuid)

    # -- allocation candidates ------------------------------------------------------------

    def allocation_candidates(self, request: CandidateRequest) -> CandidateSet:
        return self._candidates.find(request)

    def explain_candidates(self, request: CandidateRequest) -> tuple[int, list[ExplainStep]]:
        return self._candidates.explain(request)

    # -- allocations ----------------------------------------------------------------------

    def get_consumer_allocations(self, consumer_uuid: str) -> list[Allocation]:
        return allocations.for_consumer(self._ledger, consumer_uuid)

    def get_provider_allocations(self, uuid: str) -> tuple[Provider, list[Allocation]]:
        return allocations.for_provider(self._ledger, uuid)

    def set_allocations(self, writes: Mapping[str, ConsumerWrite]) -> None:
        allocations.replace_for_consumers(self._ledger, writes)

    def delete_allocations(self, consumer_uuid: str) -> None:
        allocations.delete_for_consumer(self._ledger, consumer_uuid)

    def delete_allocations_of(self, consumer_uuids: Sequence[str]) -> int:
        """Every allocation of several consumers, in one transaction (those with none are
        skipped); how many had some."""
        return allocations.delete_for_consumers(self._ledger, consumer_uuids)

    # -- usages ---------------------------------------------------------------------------

    def get_provider_usages(self, uuid: str) -> tuple[Provider, dict[str, int]]:
        return usages.for_provider(self._ledger, uuid)

    def get_total_usages(
        self,
        project_id: str,
        user_id: str | None = None,
        *,
        by_type: bool = False,
        consumer_type: str | None = None,
    ) -> list[Usage]:
        return usages.totals(
            self._ledger, project_id, user_id, by_type=by_type, consumer_type=consumer_type
        )

    # -- reshaper -------------------------------------------------------------------------

    def reshape(
        self,
        inventories: Mapping[str, tuple[int, Mapping[str, Inventory]]],
        writes: Mapping[str, ConsumerWrite],
    ) -> None:
        reshaper.reshape(self._ledger, inventories, writes)
