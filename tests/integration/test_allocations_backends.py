"""The allocation scenarios of tests/functional, run on PostgreSQL and MariaDB too: row
locks, RETURNING, executemany and aggregate types differ per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from allotment.app import build_services, create_app
from tests.conftest import PlacementClient, make_settings
from tests.functional import test_allocations as scenarios

pytestmark = pytest.mark.integration

SCENARIOS: list[Callable[[PlacementClient], None]] = [
    scenarios.test_claim_read_back_and_generations,
    scenarios.test_consumer_generation_rules,
    scenarios.test_new_consumer_with_no_allocations_is_kept,
    scenarios.test_capacity_is_total_minus_reserved_times_ratio,
    scenarios.test_over_capacity_provider_accepts_a_shrinking_claim,
    scenarios.test_unknown_provider_and_class_are_400,
    scenarios.test_move_between_providers,
    scenarios.test_delete_allocations,
    scenarios.test_list_form_and_incomplete_consumer_before_1_8,
    scenarios.test_post_moves_allocations_between_consumers_atomically,
    scenarios.test_usages_by_project_user_and_type,
    scenarios.test_reshape_moves_inventory_and_allocations_to_a_child,
    scenarios.test_reshape_refuses_to_drop_inventory_still_allocated,
]


@pytest.fixture
def backend_client(database_url: str, tmp_path: Path) -> Iterator[PlacementClient]:
    services = build_services(make_settings(tmp_path, database={"url": database_url}))
    try:
        with TestClient(create_app(services)) as test_client:
            yield PlacementClient(test_client)
    finally:
        services.db.dispose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_scenario(
    backend_client: PlacementClient, scenario: Callable[[PlacementClient], None]
) -> None:
    scenario(backend_client)
