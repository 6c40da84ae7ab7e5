"""Runtime <-> infrastructure: every setting the runtime reads on AWS reaches each function that
needs it, as the kind of value the runtime expects.

The contract is derived from ``runtime.config.Settings`` (each deployed field says which
topology resources need it and what kind of value it is), not from a list kept here, so a new
setting or a new function is covered without touching this file.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from infra_harness import Deployment, as_json
from pydantic import ValidationError

from runtime.config import HTTP, Settings
from runtime.topology import FUNCTIONS, Function, Http, Resource

LAMBDA = "aws:lambda/function:Function"
PREFIX = Settings.model_config["env_prefix"]

ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
HOST = re.compile(r"^[a-z0-9.-]+\.[a-z]{2,}$")
PARAMETER = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
COGNITO_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def deployed_fields() -> dict[str, dict[str, Any]]:
    """Settings field -> its ``deployed`` metadata (kind, needed_by)."""
    out = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "deployed" in extra:
            out[name] = extra["deployed"]  # type: ignore[assignment]
    return out


def needs(fn: Function, needed_by: list[str]) -> bool:
    if not needed_by:
        return True
    have = {str(r) for r in fn.resources} | ({HTTP} if isinstance(fn.trigger, Http) else set())
    return bool(have & set(needed_by))


def env_of(d: Deployment, fn: Function) -> dict[str, str]:
    return d.one(LAMBDA, f"functions-{fn.name}").inputs["environment"]["variables"]


def resource_values(d: Deployment) -> set[str]:
    """Every identifier the deployment's resources expose (ids and string outputs)."""
    values: set[str] = set()
    for r in d.resources:
        values.add(r.id)
        values |= {v for v in r.state.values() if isinstance(v, str)}
        secrets = r.state.get("masterUserSecrets") or []
        values |= {s["secretArn"] for s in secrets if isinstance(s, dict) and "secretArn" in s}
    return values


def check_kind(kind: str, value: str, identifiers: set[str]) -> str | None:
    """A problem with ``value`` as a value of ``kind``, or None."""
    if kind == "arn":
        if not ARN.match(value):
            return "expected an ARN"
    elif kind == "name":
        if value.startswith("arn:") or not NAME.match(value):
            return "expected a name (not an ARN, a URL or a path)"
    elif kind == "host":
        if not HOST.match(value):
            return "expected a host name"
    elif kind in ("port", "int"):
        if not value.isdigit():
            return "expected an integer"
    elif kind == "parameter":
        if value.startswith("arn:") or not PARAMETER.match(value):
            return "expected an SSM parameter name (/path/name), not its ARN"
    elif kind == "id":
        if value.startswith("arn:") or not COGNITO_ID.match(value):
            return "expected an id"
    elif kind != "literal":
        return f"unknown kind {kind!r} in runtime.config"
    if kind in ("arn", "host", "parameter", "id") and value not in identifiers:
        return "is not an identifier of any resource this stack creates"
    return None


def test_the_settings_model_declares_a_deployed_contract() -> None:
    fields = deployed_fields()
    # Non-vacuous: the contract covers the settings the pipeline cannot run without.
    assert {"bucket", "db_host", "event_bus_name", "region"} <= set(fields)
    kinds = {"arn", "name", "host", "port", "int", "id", "parameter", "literal"}
    assert {f["kind"] for f in fields.values()} <= kinds
    for fn in FUNCTIONS:
        assert any(needs(fn, f["needed_by"]) for f in fields.values())


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_each_function_gets_exactly_the_settings_it_needs(dev: Deployment, fn: Function) -> None:
    env = env_of(dev, fn)
    expected = {
        f"{PREFIX}{name}".upper()
        for name, meta in deployed_fields().items()
        if needs(fn, meta["needed_by"])
    }
    provided = {key for key in env if key.startswith(PREFIX)}
    assert not expected - provided, (
        f"{fn.name} would fail at run time without {expected - provided}"
    )
    assert not provided - expected, (
        f"{fn.name} gets {provided - expected}: not a setting it needs (misspelled, or the name "
        "of something it may not touch)"
    )


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_each_setting_has_the_kind_of_value_the_runtime_reads(
    dev: Deployment, fn: Function
) -> None:
    env = env_of(dev, fn)
    identifiers = resource_values(dev)
    fields = deployed_fields()
    problems = []
    for key, value in env.items():
        if not key.startswith(PREFIX):
            continue
        meta = fields.get(key.removeprefix(PREFIX).lower())
        assert meta is not None, f"{key} is not a deployed setting of runtime.config.Settings"
        problem = check_kind(meta["kind"], str(value), identifiers)
        if problem:
            problems.append(f"{key}={value!r}: {problem}")
    assert not problems, f"{fn.name}: {problems}"


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_the_runtime_parses_each_functions_environment(
    dev: Deployment, fn: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings also reads the process environment: only the function's own may count here.
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    env = {
        k.removeprefix(PREFIX).lower(): v
        for k, v in env_of(dev, fn).items()
        if k.startswith(PREFIX)
    }
    try:
        settings = Settings(**env)
    except ValidationError as err:  # pragma: no cover - the failure is the message
        pytest.fail(f"{fn.name}: the runtime rejects its environment: {err}")
    assert settings.stack == "dev"
    assert settings.database_url is None, "on AWS the database URL is built, never configured"


def test_a_wrong_kind_is_reported() -> None:
    """The kind checks themselves: an ARN where a name is read, a name where an ARN is."""
    ids = {"arn:aws:s3:::b", "b", "/collections/dev/k"}
    assert check_kind("name", "arn:aws:s3:::b", ids)
    assert check_kind("arn", "b", ids)
    assert check_kind("parameter", "arn:aws:ssm:us-east-1:123456789012:parameter/x", ids)
    assert check_kind("host", "db.example.com", ids) == (
        "is not an identifier of any resource this stack creates"
    )
    assert check_kind("name", "b", ids) is None
    assert check_kind("parameter", "/collections/dev/k", ids) is None


def policy_resources(d: Deployment, fn: Function) -> set[str]:
    """Every resource ARN (pattern) the function's role policy names."""
    r = d.one(LAMBDA, f"functions-{fn.name}")
    (role,) = [x for x in d.of_type("aws:iam/role:Role") if x.state["arn"] == r.inputs["role"]]
    (policy,) = [
        p for p in d.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id
    ]
    return {res for s in as_json(policy.inputs["policy"])["Statement"] for res in s["Resource"]}


def arns_by_identifier(d: Deployment) -> dict[str, str]:
    """A resource's name/id/bucket -> its ARN, for the resources that have one."""
    out: dict[str, str] = {}
    for r in d.resources:
        arn = r.state.get("arn")
        if not isinstance(arn, str):
            continue
        for ident in (r.id, r.state.get("name"), r.state.get("bucket")):
            if isinstance(ident, str) and ident:
                out.setdefault(ident, arn)
    return out


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_every_resource_a_function_is_told_about_its_role_may_use(
    dev: Deployment, fn: Function
) -> None:
    """A setting that names a resource (bucket, bus, table, parameter, secret, database user)
    names one the function's own policy grants access to: otherwise AccessDenied at run time."""
    granted = policy_resources(dev, fn)
    arns = arns_by_identifier(dev)
    fields = deployed_fields()
    checked = 0
    for key, value in env_of(dev, fn).items():
        meta = fields.get(key.removeprefix(PREFIX).lower()) if key.startswith(PREFIX) else None
        if meta is None or meta["kind"] not in ("name", "parameter", "arn"):
            continue
        if key == f"{PREFIX}DB_USER":
            assert any(g.startswith("arn:aws:rds-db:") and g.endswith(f"/{value}") for g in granted)
            checked += 1
            continue
        arn = value if str(value).startswith("arn:") else arns.get(str(value))
        if arn is None:
            continue  # a plain name (stack, region, database name): no AWS resource
        assert any(g == arn or g.startswith(f"{arn}/") for g in granted), (
            f"{fn.name}: {key}={value!r} names {arn}, which its role policy does not grant"
        )
        checked += 1
    assert checked or not (fn.resources - {Resource.DATABASE_ADMIN}), fn.name
