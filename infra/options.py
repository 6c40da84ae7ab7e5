"""Resource options, decided per kind of resource by plain functions (DESIGN.md rule 3).

Mocks do not see resource options reliably, so every option the program uses comes from here and
unit tests call these functions directly:

- auto-named resources (functions, roles, queues, rules, alarms…) keep Pulumi's default:
  create the replacement first, repoint dependents, then delete the old one;
- resources with a fixed physical name (SSM parameter paths, the dashboard) cannot coexist with
  their replacement: ``delete_before_replace``;
- stateful resources (database, bucket, user pool, tables) are ``protect``ed and
  ``retain_on_delete`` when the stack says so (``collections:protect``, on in prod).

The release-engineering work extends :data:`POLICY` (aliases, ``replace_on_changes``) without
changing the call sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi

from runtime.topology import Deploy, Function


class Kind(StrEnum):
    STATEFUL = "stateful"
    FIXED_NAME = "fixed-name"
    AUTO_NAMED = "auto-named"


# What each resource the program creates is, for the replacement policy.
POLICY: dict[str, Kind] = {
    "database": Kind.STATEFUL,
    "bucket": Kind.STATEFUL,
    "user-pool": Kind.STATEFUL,
    "idempotency-table": Kind.STATEFUL,
    "ssm-parameter": Kind.FIXED_NAME,
    "dashboard": Kind.FIXED_NAME,
}


@dataclass(frozen=True)
class OptionSpec:
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = field(default_factory=tuple)

    def to_options(self, **extra: object) -> pulumi.ResourceOptions:
        kwargs: dict[str, object] = {}
        if self.protect:
            kwargs["protect"] = True
        if self.retain_on_delete:
            kwargs["retain_on_delete"] = True
        if self.delete_before_replace:
            kwargs["delete_before_replace"] = True
        if self.replace_on_changes:
            kwargs["replace_on_changes"] = list(self.replace_on_changes)
        kwargs.update({k: v for k, v in extra.items() if v is not None})
        return pulumi.ResourceOptions(**kwargs)  # type: ignore[arg-type]


def spec_for(resource: str, *, protect: bool) -> OptionSpec:
    """The options of a named resource kind; unknown names are auto-named resources."""
    kind = POLICY.get(resource, Kind.AUTO_NAMED)
    if kind is Kind.STATEFUL:
        return OptionSpec(protect=protect, retain_on_delete=protect)
    if kind is Kind.FIXED_NAME:
        return OptionSpec(delete_before_replace=True)
    return OptionSpec()


def options_for(resource: str, *, protect: bool, **extra: object) -> pulumi.ResourceOptions:
    return spec_for(resource, protect=protect).to_options(**extra)


def runs_before_migrations(fn: Function) -> bool:
    """The migrator itself must exist before the migration invocation; nothing else may."""
    return isinstance(fn.trigger, Deploy)


def function_depends_on(
    fn: Function, migration_gates: Sequence[pulumi.Resource]
) -> list[pulumi.Resource]:
    """Every function that serves traffic waits for the migrations of this deployment."""
    return [] if runs_before_migrations(fn) else list(migration_gates)
