"""Resource options, decided per kind of resource by plain functions (DESIGN.md rule 3).

Mocks do not see resource options reliably, so every option the program uses comes from here and
unit tests call these functions directly (``tests/infra/test_infra_release.py`` also compares
what the engine receives with this table):

- auto-named resources (functions, roles, queues, rules, alarms…) keep Pulumi's default:
  create the replacement first, repoint dependents through their outputs, then delete the old
  one. That is what makes replacing a function (architecture, image, package type) safe;
- resources with a fixed physical name (SSM parameter paths, the dashboard) cannot coexist with
  their replacement: ``delete_before_replace``;
- stateful resources (database, bucket, user pool, table) are ``protect``ed and
  ``retain_on_delete`` when the stack says so (``collections:protect``, on in prod): Pulumi
  refuses to delete or replace them, and a resource dropped from the program is only forgotten,
  never deleted. They never get ``replace_on_changes``: a replacement is a new, empty store;
- ``replace_on_changes`` where an in-place update would be wrong (:data:`REPLACE_ON_CHANGES`);
- ``aliases`` (:data:`ALIASES`) so renaming or re-parenting a resource keeps its identity (its
  URN) instead of creating a new one and deleting the old; ``tests/infra/stateful_urns.json``
  fails the suite when a stateful resource's URN changes without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

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
    "conversations-table": Kind.STATEFUL,
    "ssm-parameter": Kind.FIXED_NAME,
    "dashboard": Kind.FIXED_NAME,
    "function": Kind.AUTO_NAMED,
    "migration-invocation": Kind.AUTO_NAMED,
}

# The Pulumi type of each entry (tests match recorded registrations against the table).
RESOURCE_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "database": "aws:rds/instance:Instance",
        "bucket": "aws:s3/bucket:Bucket",
        "user-pool": "aws:cognito/userPool:UserPool",
        "idempotency-table": "aws:dynamodb/table:Table",
        "conversations-table": "aws:dynamodb/table:Table",
        "ssm-parameter": "aws:ssm/parameter:Parameter",
        "dashboard": "aws:cloudwatch/dashboard:Dashboard",
        "function": "aws:lambda/function:Function",
        "migration-invocation": "aws:lambda/invocation:Invocation",
    }
)

# Properties (engine names, as `pulumi preview --diff` shows them) whose change must replace the
# resource even where the provider could update it in place.
REPLACE_ON_CHANGES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # An SSM parameter keeps every earlier version in its history: changing String <->
        # SecureString or the KMS key in place would leave the old (plaintext, or old-key)
        # versions readable. Replacing deletes the parameter with its history.
        "ssm-parameter": ("type", "keyId"),
        # Lambda cannot switch a function between Zip and Image in place; declaring it makes the
        # predecessor's scenario (zip -> image) a planned create-before-delete replacement here.
        "function": ("packageType",),
        # The migration invocation runs when it is created. An in-place update of its triggers
        # (the migration hash) or input would record the new value without running the migrator.
        "migration-invocation": ("input", "triggers"),
    }
)

REASONS: Mapping[Kind, str] = MappingProxyType(
    {
        Kind.STATEFUL: "holds data: protect + retain_on_delete when the stack says so, "
        "never replace_on_changes",
        Kind.FIXED_NAME: "its physical name is fixed, so the old one must go before the "
        "replacement can be created: delete_before_replace",
        Kind.AUTO_NAMED: "auto-named: the replacement is created first, dependents follow "
        "through outputs, then the old one is deleted",
    }
)

# Renames and re-parents, by the resource's *current* logical name (the name passed to the
# resource or component): the identities it had before. Example, after renaming the storage
# component from "storage" to "store" (its children keep their identity too, because the engine
# applies a parent's alias to every child whose name starts with the parent's):
#     "store": (pulumi.Alias(name="storage"),),
# and after moving the bucket out of that component to the top level:
#     "bucket": (pulumi.Alias(name="storage-bucket", parent="urn:pulumi:<stack>::collections::"
#                "collections:storage:Storage::storage"),),
# An alias is permanent history: remove it only once every stack has been updated past it.
ALIASES: dict[str, tuple[pulumi.Alias | str, ...]] = {}


@dataclass(frozen=True)
class OptionSpec:
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = field(default_factory=tuple)
    aliases: tuple[pulumi.Alias | str, ...] = field(default_factory=tuple)

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
        if self.aliases:
            kwargs["aliases"] = list(self.aliases)
        kwargs.update({k: v for k, v in extra.items() if v is not None})
        return pulumi.ResourceOptions(**kwargs)  # type: ignore[arg-type]


def kind_of(resource: str) -> Kind:
    return POLICY.get(resource, Kind.AUTO_NAMED)


def spec_for(resource: str, *, protect: bool, name: str | None = None) -> OptionSpec:
    """The options of a named resource kind (unknown names are auto-named resources);
    ``name`` is the logical name, whose :data:`ALIASES` entry is added."""
    kind = kind_of(resource)
    aliases = ALIASES.get(name, ()) if name is not None else ()
    if kind is Kind.STATEFUL:
        return OptionSpec(protect=protect, retain_on_delete=protect, aliases=aliases)
    replace = REPLACE_ON_CHANGES.get(resource, ())
    if kind is Kind.FIXED_NAME:
        return OptionSpec(delete_before_replace=True, replace_on_changes=replace, aliases=aliases)
    return OptionSpec(replace_on_changes=replace, aliases=aliases)


def options_for(
    resource: str, *, protect: bool, name: str | None = None, **extra: object
) -> pulumi.ResourceOptions:
    return spec_for(resource, protect=protect, name=name).to_options(**extra)


def component_options(name: str, **extra: object) -> pulumi.ResourceOptions:
    """Options of a component: its aliases (inherited by every child named after it)."""
    return OptionSpec(aliases=ALIASES.get(name, ())).to_options(**extra)


def runs_before_migrations(fn: Function) -> bool:
    """The migrator itself must exist before the migration invocation; nothing else may."""
    return isinstance(fn.trigger, Deploy)


def function_depends_on(
    fn: Function, migration_gates: Sequence[pulumi.Resource]
) -> list[pulumi.Resource]:
    """Every function that serves traffic waits for the migrations of this deployment."""
    return [] if runs_before_migrations(fn) else list(migration_gates)
