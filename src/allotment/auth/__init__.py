"""Authentication (who is calling) and policy (what they may do).

Two back-ends: ``token`` (the default; tokens stored hashed in the SQL store, a bootstrap
admin token written on first start) and ``noauth`` (upstream Placement's noauth2
behaviour, for development and conformance runs only).
"""

from allotment.auth.base import Authenticator, credentials_from_headers
from allotment.auth.policy import authorize

__all__ = ["Authenticator", "authorize", "credentials_from_headers"]
