"""Migrations: invoke the migrator (same image, ``Deploy`` trigger) during ``pulumi up``.

An ``aws.lambda_.Invocation`` runs when it is created or replaced; its ``triggers`` hold the hash
of ``runtime/db/migrations/versions/*.py`` and the database's address, so it runs again exactly
when the migration set changes or the database is a new one. It depends on the whole database
component (instance, security-group rules, parameter group), and every function that serves
traffic depends on it. A failed migration fails the update before any function is switched to
the new image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra.options import options_for

# What the migrator receives: upgrade to the newest revision.
MIGRATE_INPUT = {"action": "upgrade", "revision": "head"}


def invocation_triggers(migrations_hash: str, database_address: str) -> dict[str, str]:
    return {"migrations": migrations_hash, "database": database_address}


class Migrations(pulumi.ComponentResource):
    invocations: list[aws.lambda_.Invocation]

    def __init__(
        self,
        name: str,
        *,
        functions: Sequence[tuple[str, aws.lambda_.Function]],
        database: pulumi.Resource,
        database_address: pulumi.Input[str],
        migrations_hash: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:migrations:Migrations", name, None, opts)
        self.invocations = []
        triggers = pulumi.Output.from_input(database_address).apply(
            lambda address: invocation_triggers(migrations_hash, address)
        )
        for fn_name, function in functions:
            self.invocations.append(
                aws.lambda_.Invocation(
                    f"{name}-{fn_name}",
                    function_name=function.name,
                    input=json.dumps(MIGRATE_INPUT),
                    triggers=triggers,
                    opts=options_for(
                        "migration-invocation",
                        protect=False,
                        name=f"{name}-{fn_name}",
                        parent=self,
                        depends_on=[database, function],
                    ),
                )
            )
        self.register_outputs({"migrationsHash": migrations_hash})
