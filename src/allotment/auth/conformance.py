"""Upstream's gabbi policy fixtures, as ``[oslo_policy]`` settings, for conformance runs.

The conformance harness restarts ``allotment serve --auth noauth`` before every upstream
test file with ``GABBI_FIXTURE`` naming the fixture upstream runs that file under. Upstream's
fixtures configure the policy in-process; these are the same settings, applied only with
``noauth`` (a development server), never to a server that authenticates its callers:

- every fixture: ``enforce_new_defaults = false`` (upstream's APIFixture default);
- ``SecureRBACPolicyFixture``: ``enforce_new_defaults = true``;
- ``OpenPolicyFixture``: a policy file setting every rule but ``admin_api`` to ``@``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from allotment.auth.policy import default_rules
from allotment.config import OsloPolicyConfig

LOG = logging.getLogger(__name__)
FIXTURE_ENV = "GABBI_FIXTURE"


def fixture_policy(
    options: OsloPolicyConfig, environ: Mapping[str, str], state_dir: Path
) -> OsloPolicyConfig:
    """``options`` as the upstream fixture in ``environ`` sets them (unchanged without one)."""
    fixture = environ.get(FIXTURE_ENV)
    if not fixture:
        return options
    secure = fixture == "SecureRBACPolicyFixture"
    changed = options.model_copy(update={"enforce_new_defaults": secure})
    if fixture == "OpenPolicyFixture":
        path = state_dir / "open-policy.yaml"
        state_dir.mkdir(parents=True, exist_ok=True)
        names = [rule.name for rule in default_rules() if rule.name != "admin_api"]
        path.write_text("".join(f'"{name}": "@"\n' for name in names))
        changed = changed.model_copy(update={"policy_file": path})
    LOG.warning("policy set up as upstream's %s (%s)", fixture, changed)
    return changed
