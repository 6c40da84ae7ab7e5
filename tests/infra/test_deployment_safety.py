"""What would break a real deployment, or leave it blind, checked on the mocked program:
alarms that can fire (against the AWS metric facts in aws_metrics.py), connections and
concurrency bounded, and the hardening a first `pulumi up` relies on."""

from __future__ import annotations

from typing import Any

import pytest
from aws_metrics import (
    FACTS,
    HIGH,
    HTTP_API_MAX_INTEGRATION_TIMEOUT_MS,
    LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY,
    LAMBDA_MAX_TIMEOUT_S,
    LAMBDA_UNRESERVED_MINIMUM,
    LOW,
)
from infra_harness import Deployment, Res, as_json, stack_config_with_secrets

from infra.config import SERVER_RESERVED_CONNECTIONS, ConfigError, parse, required_connections
from runtime.topology import (
    FUNCTIONS,
    Deploy,
    Function,
    Http,
    Resource,
    event_functions,
    uses_database,
)

LAMBDA = "aws:lambda/function:Function"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
QUEUE = "aws:sqs/queue:Queue"
RULE = "aws:cloudwatch/eventRule:EventRule"
RDS = "aws:rds/instance:Instance"
GIB = 1024**3


def lambda_of(d: Deployment, fn: Function) -> Res:
    return d.one(LAMBDA, f"functions-{fn.name}")


def alarms(d: Deployment) -> list[Res]:
    return d.of_type(ALARM)


def alarms_on(d: Deployment, namespace: str, metric: str) -> list[Res]:
    return [
        a
        for a in alarms(d)
        if a.inputs["namespace"] == namespace and a.inputs["metricName"] == metric
    ]


def db_parameters(d: Deployment) -> dict[str, str]:
    (pg,) = d.of_type("aws:rds/parameterGroup:ParameterGroup")
    return {p["name"]: p["value"] for p in pg.inputs["parameters"]}


# ------------------------------------------------------------------ alarms against AWS facts


def test_every_alarm_uses_a_metric_aws_publishes_as_aws_publishes_it(dev: Deployment) -> None:
    found = alarms(dev)
    assert len(found) >= len(FUNCTIONS) * 2
    for a in found:
        i = a.inputs
        fact = FACTS.get((i["namespace"], i["metricName"]))
        assert fact is not None, (
            f"{a.name}: {i['namespace']}/{i['metricName']} is not a known metric"
        )
        assert frozenset(i["dimensions"]) in fact.dimension_sets, (a.name, i["dimensions"])
        assert i["statistic"] in fact.statistics, (a.name, i["statistic"], fact.source)
        wanted = HIGH if fact.trouble == "high" else LOW
        assert i["comparisonOperator"] in wanted, (a.name, i["comparisonOperator"])
        assert i["period"] >= 60 and i["evaluationPeriods"] >= 1
        if fact.sparse:
            assert i["treatMissingData"] == "notBreaching", a.name


def test_alarm_thresholds_are_in_the_metrics_units(dev: Deployment) -> None:
    for a in alarms(dev):
        i = a.inputs
        fact = FACTS[(i["namespace"], i["metricName"])]
        if fact.unit == "Count" and i["statistic"] == "Sum":
            assert i["threshold"] == 0, f"{a.name}: any occurrence is trouble"
    (rate,) = alarms_on(dev, "AWS/ApiGateway", "5xx")
    assert 0 < rate.inputs["threshold"] < 1, "Average of 5xx is a rate in [0, 1]"
    cfg = parse(dev.config, stack="dev")
    assert rate.inputs["threshold"] == cfg.monitoring.api_5xx_rate_threshold
    (storage,) = alarms_on(dev, "AWS/RDS", "FreeStorageSpace")
    assert storage.inputs["threshold"] == cfg.monitoring.db_free_storage_threshold_gb * GIB
    (connections,) = alarms_on(dev, "AWS/RDS", "DatabaseConnections")
    max_connections = int(db_parameters(dev)["max_connections"])
    assert max_connections // 2 <= connections.inputs["threshold"] < max_connections


def test_alarms_name_the_resources_they_watch(dev: Deployment) -> None:
    queues = {q.state["name"] for q in dev.of_type(QUEUE)}
    depth = alarms_on(dev, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert {a.inputs["dimensions"]["QueueName"] for a in depth} == queues
    assert all(a.inputs["threshold"] == 0 for a in depth)

    functions = {f.state["name"] for f in dev.of_type(LAMBDA)}
    for metric in ("Errors", "Throttles"):
        watched = {
            a.inputs["dimensions"]["FunctionName"] for a in alarms_on(dev, "AWS/Lambda", metric)
        }
        assert watched == functions, metric
    async_names = {lambda_of(dev, fn).state["name"] for fn in event_functions()}
    delivery = alarms_on(dev, "AWS/Lambda", "DestinationDeliveryFailures")
    assert {a.inputs["dimensions"]["FunctionName"] for a in delivery} == async_names

    (bus,) = dev.of_type("aws:cloudwatch/eventBus:EventBus")
    rules = {r.state["name"]: r.inputs.get("eventBusName") for r in dev.of_type(RULE)}
    for metric in ("FailedInvocations", "InvocationsFailedToBeSentToDlq"):
        found = alarms_on(dev, "AWS/Events", metric)
        seen = {}
        for a in found:
            dims = a.inputs["dimensions"]
            seen[dims["RuleName"]] = dims.get("EventBusName")
        assert seen == rules, metric
        assert bus.state["name"] in seen.values()  # the custom bus's rules carry its name

    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    (rate,) = alarms_on(dev, "AWS/ApiGateway", "5xx")
    assert rate.inputs["dimensions"] == {"ApiId": api.id}
    (db,) = dev.of_type(RDS)
    for metric in ("FreeStorageSpace", "DatabaseConnections"):
        (a,) = alarms_on(dev, "AWS/RDS", metric)
        assert a.inputs["dimensions"] == {"DBInstanceIdentifier": db.state["identifier"]}


def test_alarms_notify_an_encrypted_topic_cloudwatch_can_publish_to(dev: Deployment) -> None:
    (topic,) = dev.of_type("aws:sns/topic:Topic")
    (key,) = dev.of_type("aws:kms/key:Key")
    assert topic.inputs["kmsMasterKeyId"] == key.state["arn"]
    assert key.inputs["enableKeyRotation"] is True
    policy = as_json(key.inputs["policy"])
    cloudwatch = [
        s
        for s in policy["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1 and cloudwatch[0]["Effect"] == "Allow"
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(cloudwatch[0]["Action"])
    for a in alarms(dev):
        assert a.inputs["alarmActions"] == [topic.state["arn"]], a.name
        assert a.inputs["okActions"] == [topic.state["arn"]], a.name


# ------------------------------------------------------------------ concurrency and connections


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_each_function_has_its_reserved_concurrency(dev: Deployment, fn: Function) -> None:
    reserved = lambda_of(dev, fn).inputs.get("reservedConcurrentExecutions")
    assert reserved == fn.reserved_concurrency
    assert reserved >= 1, "0 would disable the function"


def test_reserved_concurrency_fits_a_default_account(dev: Deployment) -> None:
    total = sum(f.inputs["reservedConcurrentExecutions"] for f in dev.of_type(LAMBDA))
    assert total <= LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY - LAMBDA_UNRESERVED_MINIMUM


@pytest.mark.parametrize("label", ["dev", "prod"])
def test_database_connections_are_bounded_below_max_connections(
    label: str, dev: Deployment, prod: Deployment
) -> None:
    """Each function may hold (pool size + overflow) connections per environment, in at most its
    reserved concurrency of environments: the sum stays below the server's max_connections."""
    d = dev if label == "dev" else prod
    budget = SERVER_RESERVED_CONNECTIONS
    for f in d.of_type(LAMBDA):
        env = f.inputs["environment"]["variables"]
        if "COLLECTIONS_DB_HOST" not in env:
            continue
        per_environment = int(env["COLLECTIONS_DB_POOL_SIZE"]) + int(
            env["COLLECTIONS_DB_MAX_OVERFLOW"]
        )
        budget += f.inputs["reservedConcurrentExecutions"] * per_environment
    assert budget <= int(db_parameters(d)["max_connections"])
    connecting = [f for f in FUNCTIONS if uses_database(f)]
    assert len(connecting) == sum(
        "COLLECTIONS_DB_HOST" in f.inputs["environment"]["variables"] for f in d.of_type(LAMBDA)
    )


def test_a_budget_above_max_connections_is_refused_with_its_fix() -> None:
    raw = stack_config_with_secrets("dev") | {"collections:dbMaxConnections": "40"}
    with pytest.raises(ConfigError) as caught:
        parse(raw, stack="dev")
    needed = required_connections(FUNCTIONS)
    assert needed > 40
    assert f"pulumi config set collections:dbMaxConnections {needed}" in str(caught.value)
    assert parse(raw | {"collections:dbMaxConnections": str(needed)}, stack="dev")


# ------------------------------------------------------------------ hardening


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_each_function_depends_on_its_role_policy(dev: Deployment, fn: Function) -> None:
    """On a fresh stack Lambda checks the role at CreateFunction (a VPC function needs
    ec2:CreateNetworkInterface already): the policy must exist before the function."""
    r = lambda_of(dev, fn)
    (role,) = [x for x in dev.of_type("aws:iam/role:Role") if x.state["arn"] == r.inputs["role"]]
    (policy,) = [
        p for p in dev.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id
    ]
    assert policy.urn in r.dependencies


def test_function_timeouts_are_within_lambdas_limit_and_the_apis(dev: Deployment) -> None:
    (integration,) = dev.of_type("aws:apigatewayv2/integration:Integration")
    timeout_ms = integration.inputs["timeoutMilliseconds"]
    assert 50 <= timeout_ms <= HTTP_API_MAX_INTEGRATION_TIMEOUT_MS
    for fn in FUNCTIONS:
        seconds = lambda_of(dev, fn).inputs["timeout"]
        assert 1 <= seconds <= LAMBDA_MAX_TIMEOUT_S, fn.name
        if isinstance(fn.trigger, Http):
            # The function gives up before the API does: its own timeout is logged, not a 504.
            assert seconds * 1000 < timeout_ms


def _rule(r: Res) -> dict[str, Any]:
    i = r.inputs
    return {k: i.get(k) for k in ("ipProtocol", "fromPort", "toPort", "cidrIpv4", "cidrIpv6")} | {
        "to": i.get("referencedSecurityGroupId")
    }


def test_security_groups_allow_only_what_is_needed(dev: Deployment) -> None:
    groups = {g.name: g for g in dev.of_type("aws:ec2/securityGroup:SecurityGroup")}
    fn_sg, db_sg = groups["network-functions-sg"], groups["database-sg"]
    for g in groups.values():
        assert "ingress" not in g.inputs and "egress" not in g.inputs, (
            "rules are separate resources"
        )
    egress = dev.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in egress:
        by_group.setdefault(r.inputs["securityGroupId"], []).append(_rule(r))
    https = {
        "ipProtocol": "tcp",
        "fromPort": 443,
        "toPort": 443,
        "cidrIpv4": "0.0.0.0/0",
        "cidrIpv6": None,
        "to": None,
    }
    postgres = {
        "ipProtocol": "tcp",
        "fromPort": 5432,
        "toPort": 5432,
        "cidrIpv4": None,
        "cidrIpv6": None,
        "to": db_sg.id,
    }
    assert sorted(by_group[fn_sg.id], key=str) == sorted([https, postgres], key=str)
    assert db_sg.id not in by_group, "the database initiates nothing"
    ingress = dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert [_rule(r) | {"group": r.inputs["securityGroupId"]} for r in ingress] == [
        {
            "ipProtocol": "tcp",
            "fromPort": 5432,
            "toPort": 5432,
            "cidrIpv4": None,
            "cidrIpv6": None,
            "to": fn_sg.id,
            "group": db_sg.id,
        }
    ]


def test_cognito_does_not_reveal_which_users_exist(deployment: Deployment) -> None:
    (client,) = deployment.of_type("aws:cognito/userPoolClient:UserPoolClient")
    assert client.inputs["preventUserExistenceErrors"] == "ENABLED"
    assert client.inputs["enableTokenRevocation"] is True


@pytest.mark.parametrize("label", ["dev", "prod"])
def test_database_upgrades_and_storage_growth_are_bounded(
    label: str, dev: Deployment, prod: Deployment
) -> None:
    d = dev if label == "dev" else prod
    (db,) = d.of_type(RDS)
    i = db.inputs
    assert i["allowMajorVersionUpgrade"] is False, "a major upgrade is a planned migration"
    assert i["autoMinorVersionUpgrade"] is True
    assert i["allocatedStorage"] < i["maxAllocatedStorage"]
    assert (
        i["maxAllocatedStorage"] == parse(d.config, stack=label).database.max_allocated_storage_gb
    )
    assert i["iamDatabaseAuthenticationEnabled"] is True
    assert i["storageEncrypted"] is True and i["publiclyAccessible"] is False
    assert db_parameters(d)["rds.force_ssl"] == "1"


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_only_the_migrator_holds_the_master_credentials(dev: Deployment, fn: Function) -> None:
    """Migrations change the schema: the Deploy function signs in as the master user (the
    secret); every other function as the application role, which cannot (test_migrations)."""
    env = lambda_of(dev, fn).inputs["environment"]["variables"]
    if isinstance(fn.trigger, Deploy):
        assert Resource.DATABASE_ADMIN in fn.resources
        assert "COLLECTIONS_DB_SECRET_ARN" in env and "COLLECTIONS_DB_USER" not in env
    else:
        assert Resource.DATABASE_ADMIN not in fn.resources
        assert "COLLECTIONS_DB_SECRET_ARN" not in env
