"""Placement's microversions, each listed once with what it added.

Shared by the HTTP layer (negotiation, handlers) and the schemas, which must not import
``placement.api``.
"""

from __future__ import annotations

# Every microversion once, with what it added (as upstream's placement/microversion.py).
# Handlers and schemas name the feature (``req.mv.at_least(mv.CONSUMER_TYPES)``), never a number.
PROVIDER_AGGREGATES = 1  # 1.1: GET/PUT /resource_providers/{uuid}/aggregates
RESOURCE_CLASSES = 2  # 1.2: /resource_classes, custom resource classes
MEMBER_OF = 3  # 1.3: member_of on GET /resource_providers
RESOURCES_FILTER = 4  # 1.4: resources= on GET /resource_providers
DELETE_ALL_INVENTORIES = 5  # 1.5: DELETE /resource_providers/{uuid}/inventories
TRAITS = 6  # 1.6: /traits and /resource_providers/{uuid}/traits
BODILESS_CLASS_PUT = 7  # 1.7: PUT /resource_classes/{name} creates or confirms, no body
ALLOCATION_OWNER = 8  # 1.8: project_id and user_id required on PUT /allocations
USAGES = 9  # 1.9: GET /usages (per project and user)
ALLOCATION_CANDIDATES = 10  # 1.10: GET /allocation_candidates
ALLOCATIONS_LINK = 11  # 1.11: "allocations" link of a resource provider
DICT_ALLOCATIONS = 12  # 1.12: allocations as a dict keyed by provider (PUT, candidates)
POST_ALLOCATIONS = 13  # 1.13: POST /allocations for several consumers at once
NESTED_PROVIDERS = 14  # 1.14: parent/root provider uuids, in_tree
LAST_MODIFIED = 15  # 1.15: last-modified and cache-control headers
CANDIDATE_LIMIT = 16  # 1.16: limit on GET /allocation_candidates
CANDIDATE_TRAITS = 17  # 1.17: required traits on candidates, traits in summaries
PROVIDER_TRAITS_FILTER = 18  # 1.18: required on GET /resource_providers
AGGREGATES_GENERATION = 19  # 1.19: provider generation with provider aggregates
CREATE_RETURNS_PROVIDER = 20  # 1.20: POST /resource_providers returns the provider
CANDIDATE_MEMBER_OF = 21  # 1.21: member_of on GET /allocation_candidates
FORBIDDEN_TRAITS = 22  # 1.22: "!TRAIT" in required
ERROR_CODES = 23  # 1.23: error bodies carry "code"
MULTI_MEMBER_OF = 24  # 1.24: member_of may repeat
GRANULAR_GROUPS = 25  # 1.25: numbered request groups and group_policy
EMPTY_INVENTORY = 26  # 1.26: an inventory may have reserved == total (capacity 0)
ALL_RESOURCES_SUMMARY = 27  # 1.27: provider summaries list every class the provider has
CONSUMER_GENERATION = 28  # 1.28: consumer generations
NESTED_CANDIDATES = 29  # 1.29: nested-aware candidates, parent/root in summaries
RESHAPER = 30  # 1.30: POST /reshaper
CANDIDATE_IN_TREE = 31  # 1.31: in_tree (and in_treeN) on GET /allocation_candidates
FORBIDDEN_AGGREGATES = 32  # 1.32: "!agg" and "!in:" in member_of
VERBOSE_SUFFIXES = 33  # 1.33: request group suffixes beyond numbers
MAPPINGS = 34  # 1.34: "mappings" in allocation requests
ROOT_REQUIRED = 35  # 1.35: root_required on GET /allocation_candidates
SAME_SUBTREE = 36  # 1.36: same_subtree, resourceless groups
REPARENTING = 37  # 1.37: a provider may be re-parented or un-parented
CONSUMER_TYPES = 38  # 1.38: consumer_type on allocations, usages per type
ANY_TRAITS = 39  # 1.39: "in:" in required, and required may repeat

MIN_VERSION = (1, 0)
MAX_VERSION = (1, ANY_TRAITS)
