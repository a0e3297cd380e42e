"""Domain exceptions, raised by the service layers and mapped to HTTP once in the API layer.

Each exception carries a human message (what was wrong and, where useful, how to fix it) and
a stable error ``code``; the Placement codes are the ones upstream clients switch on.
"""

from __future__ import annotations

from typing import Any

# Placement error codes (the strings clients match on, as upstream defines them).
DEFAULT_CODE = "placement.undefined_code"
INVENTORY_INUSE = "placement.inventory.inuse"
CONCURRENT_UPDATE = "placement.concurrent_update"
DUPLICATE_NAME = "placement.duplicate_name"
PROVIDER_IN_USE = "placement.resource_provider.inuse"
PROVIDER_CANNOT_DELETE_PARENT = "placement.resource_provider.cannot_delete_parent"
RESOURCE_PROVIDER_NOT_FOUND = "placement.resource_provider.not_found"
ILLEGAL_DUPLICATE_QUERYPARAM = "placement.query.duplicate_key"
QUERYPARAM_BAD_VALUE = "placement.query.bad_value"
QUERYPARAM_MISSING_VALUE = "placement.query.missing_value"

# allotment's own codes.
NO_VALID_HOST = "allotment.no_valid_host"
PLACEMENT_UNAVAILABLE = "allotment.placement_unavailable"
DATABASE_UNAVAILABLE = "allotment.database_unavailable"
NEUTRON_UNAVAILABLE = "allotment.neutron_unavailable"
REQUEST_TOO_LARGE = "allotment.request_too_large"
REQUEST_TIMEOUT = "allotment.request_timeout"


class AllotmentError(Exception):
    """Base of every error a caller may see; ``message`` is safe to show to the caller."""

    code: str = DEFAULT_CODE

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # Additional top-level members of the error object (e.g. an explanation).
        self.extra: dict[str, Any] = extra


class InvalidInput(AllotmentError):
    """The request is malformed or asks for something impossible (HTTP 400)."""


class ValidatorsDisagree(InvalidInput):
    """The fast schema validator refused a document that jsonschema accepts (still a 400;
    a caller that knows the case may word it better)."""


class NotFound(AllotmentError):
    """A named object does not exist (HTTP 404)."""


class UnknownResourceClass(InvalidInput):
    """A request names a resource class that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such resource class {name}.")
        self.name = name


class ResourceClassNotFound(NotFound):
    """No resource class has this name (HTTP 404 where the class is the resource itself)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such resource class {name}.")
        self.name = name


class UnknownTraits(InvalidInput):
    """A request names traits that do not exist."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"No such trait {', '.join(names)}")
        self.names = names


class TraitNotFound(NotFound):
    """No trait has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such trait(s): {name}.")
        self.name = name


class UnknownTrait(InvalidInput):
    """A query filters on a trait that does not exist (400 "No such trait(s): X.", the
    wording of GET /allocation_candidates and GET /resource_providers)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such trait(s): {name}.")
        self.name = name


class InventoryNotFound(NotFound):
    """A provider has no inventory of the named class."""

    def __init__(self, resource_class: str) -> None:
        super().__init__(f"No inventory of class {resource_class} found.")
        self.resource_class = resource_class


class Conflict(AllotmentError):
    """The request conflicts with the current state (HTTP 409); nothing was written."""


class ConcurrentUpdate(Conflict):
    """A generation check failed: somebody else changed the object first (HTTP 409)."""

    code = CONCURRENT_UPDATE


class GenerationConflict(ConcurrentUpdate):
    """The provider or consumer generation a caller sent is not the current one (HTTP 409);
    the message says which object and both generations."""


class InvalidAllocation(Conflict):
    """An allocation does not fit: no such inventory, over capacity, or outside min_unit,
    max_unit and step_size (HTTP 409; upstream gives it no specific code)."""


class AllocationProviderNotFound(InvalidInput):
    """An allocation names a resource provider that does not exist."""

    def __init__(self, uuid: str) -> None:
        super().__init__(f"Allocation for resource provider '{uuid}' that does not exist.")
        self.uuid = uuid


class DuplicateName(Conflict):
    code = DUPLICATE_NAME


class InventoryInUse(Conflict):
    code = INVENTORY_INUSE


class ProviderInUse(Conflict):
    code = PROVIDER_IN_USE


class CannotDeleteParent(Conflict):
    code = PROVIDER_CANNOT_DELETE_PARENT


class StandardNameReadOnly(InvalidInput):
    """Standard resource classes and traits (os-resource-classes, os-traits) are read-only."""


class ResourceClassExists(Conflict):
    """A resource class of that name already exists (upstream sends no specific code)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Resource class {name} already exists.")
        self.name = name


class ResourceClassInUse(Conflict):
    """A resource class cannot be deleted while providers have inventory of it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Cannot delete resource class {name}. Class is in use in inventory.")
        self.name = name


class TraitInUse(Conflict):
    """A trait cannot be deleted while providers have it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"The trait {name} is in use by a resource provider.")
        self.name = name


class Unauthorized(AllotmentError):
    """No valid credentials (HTTP 401)."""


class Forbidden(AllotmentError):
    """Valid credentials that policy does not allow for this action (HTTP 403)."""


class NotAcceptable(AllotmentError):
    """The requested microversion or representation is not available (HTTP 406)."""


class UnsupportedMediaType(AllotmentError):
    """The request body is not JSON (HTTP 415)."""

    def __init__(self, message: str, media_type: str) -> None:
        super().__init__(message)
        self.media_type = media_type


class MethodNotAllowed(AllotmentError):
    """The path exists but not for this method (HTTP 405)."""

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class NoValidHost(Conflict):
    """The scheduler found no host; ``extra['explanation']`` says which stage removed what."""

    code = NO_VALID_HOST


class ServiceUnavailable(AllotmentError):
    """A dependency (e.g. a remote Placement) cannot be reached (HTTP 503)."""

    code = PLACEMENT_UNAVAILABLE


class DatabaseUnavailable(ServiceUnavailable):
    """The SQL database cannot be reached (HTTP 503); the process stays up and retries."""

    code = DATABASE_UNAVAILABLE


class NeutronUnavailable(ServiceUnavailable):
    """Neutron (asked for a network's segments) cannot be reached or used (HTTP 503)."""

    code = NEUTRON_UNAVAILABLE


class NeutronRefused(AllotmentError):
    """Neutron answered a lookup with an error: an unknown port (Nova's PortNotFound), a
    subnet or network it cannot answer for (Nova's InvalidRoutedNetworkConfiguration).
    The routed-networks request filter turns it into an explained NoValidHost."""


class RequestTooLarge(AllotmentError):
    """A request's headers or body exceed the configured ``[limits]`` (HTTP 413 or 431)."""

    code = REQUEST_TOO_LARGE

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class RequestTimeout(AllotmentError):
    """The request was not received, or not answered, within ``[limits]`` (408 or 503)."""

    code = REQUEST_TIMEOUT

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(Exception):
    """Configuration is invalid; the message lists what to fix. Raised only at start-up."""
