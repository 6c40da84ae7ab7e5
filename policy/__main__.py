"""Entry point the Pulumi CLI runs for ``--policy-pack policy`` (see PulumiPolicy.yaml).

The policies live in :mod:`policy.rules` so tests import them without starting the analyzer
server that ``PolicyPack`` runs (it serves the engine until it is stopped).
"""
# ruff: noqa: E402  (the path bootstrap below must precede the project imports)

import sys
from pathlib import Path

# The CLI runs this file from policy/; `policy.rules` is importable from the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.rules import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
