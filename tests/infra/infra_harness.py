"""Harness: run the real Pulumi program (``infra/``) under Pulumi mocks, with no CLI.

The program is executed exactly as the Pulumi language host does (``runpy.run_path`` on the
``infra/`` directory), once per mode: ``preview=True`` and ``preview=False`` with the dev stack's
own ``Pulumi.dev.yaml`` (plus recognisable fake secrets), and once with ``Pulumi.prod.yaml``.

A recording monitor keeps, for every registered resource, its URN, type, inputs (as the engine
would receive them), its parent, its dependencies (explicit ``depends_on`` and the ones its
inputs carry) and the options the engine sees (protect, retain_on_delete,
delete_before_replace), so tests assert on plain dicts.

``set_mocks`` is process-global; each run re-points it at a fresh monitor and resets the root
stack, so the three runs do not see each other's resources.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor, _sync_await
from pulumi.runtime.stack import run_pulumi_func

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

ACCOUNT = "123456789012"
REGION = "us-east-1"
# Recognisable fake secrets: they may appear in the SecureString parameters' values, nowhere else.
FAKE_SECRETS = {
    "collections:anthropicApiKey": "sk-ant-FAKE-SECRET-anthropic-5b0c77e1",
    "collections:voyageApiKey": "pa-FAKE-SECRET-voyage-91d4a2f3",
}
FAKE_ECR_PASSWORD = "FAKE-ECR-TOKEN-c0ffee"
STACK_TYPE = "pulumi:pulumi:Stack"


# --------------------------------------------------------------------------- configuration


def pulumi_string(value: Any) -> str:
    """How the Pulumi CLI hands a stack-file value to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def stack_file_config(stack: str) -> dict[str, str]:
    data = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {key: pulumi_string(value) for key, value in (data.get("config") or {}).items()}


def stack_config_with_secrets(stack: str) -> dict[str, str]:
    return stack_file_config(stack) | FAKE_SECRETS


# --------------------------------------------------------------------------- mocks


def _short(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:7]


def mock_outputs(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(physical id, outputs) for a resource, shaped like the provider's (camelCase keys)."""
    phys = f"{name}-{_short(name)}"
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    out: dict[str, Any] = {}
    rid = f"{phys}-id"
    if typ == "aws:lambda/function:Function":
        fname = inputs.get("name") or phys
        farn = arn.format("lambda", f"function:{fname}")
        invoke = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{farn}/invocations"
        out = {"name": fname, "arn": farn, "invokeArn": invoke, "qualifiedArn": f"{farn}:$LATEST"}
        rid = fname
    elif typ == "aws:iam/role:Role":
        out = {"name": phys, "arn": f"arn:aws:iam::{ACCOUNT}:role/{phys}"}
        rid = phys
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        lg = inputs.get("name") or f"{inputs.get('namePrefix', name + '-')}{_short(name)}0000000001"
        out = {"name": lg, "arn": arn.format("logs", f"log-group:{lg}")}
        rid = lg
    elif typ == "aws:sqs/queue:Queue":
        url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{phys}"
        out = {"name": phys, "arn": arn.format("sqs", phys), "url": url}
        rid = url
    elif typ == "aws:cloudwatch/eventBus:EventBus":
        out = {"name": phys, "arn": arn.format("events", f"event-bus/{phys}")}
        rid = phys
    elif typ == "aws:cloudwatch/eventRule:EventRule":
        bus = inputs.get("eventBusName")
        path = f"rule/{bus}/{phys}" if bus and bus != "default" else f"rule/{phys}"
        out = {"name": phys, "arn": arn.format("events", path)}
        rid = phys
    elif typ == "aws:s3/bucket:Bucket":
        bucket = phys.lower()
        out = {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        rid = bucket
    elif typ == "aws:dynamodb/table:Table":
        out = {"name": phys, "arn": arn.format("dynamodb", f"table/{phys}")}
        rid = phys
    elif typ == "aws:ssm/parameter:Parameter":
        out = {"arn": arn.format("ssm", f"parameter{inputs['name']}")}
        rid = inputs["name"]
    elif typ == "aws:rds/instance:Instance":
        ident = phys.lower()
        secret = arn.format("secretsmanager", f"secret:rds!db-{_short(name)}-AbCdEf")
        out = {
            "identifier": ident,
            "address": f"{ident}.cmock.{REGION}.rds.amazonaws.com",
            "port": inputs.get("port", 5432),
            "arn": arn.format("rds", f"db:{ident}"),
            "masterUserSecrets": [{"secretArn": secret, "secretStatus": "active"}],
        }
        rid = ident
    elif typ == "aws:cognito/userPool:UserPool":
        rid = f"{REGION}_Mock{_short(name)}"
        out = {
            "endpoint": f"cognito-idp.{REGION}.amazonaws.com/{rid}",
            "arn": arn.format("cognito-idp", f"userpool/{rid}"),
        }
    elif typ == "aws:cognito/userPoolClient:UserPoolClient":
        rid = f"mockclient{_short(name)}"
    elif typ == "aws:apigatewayv2/api:Api":
        rid = f"api{_short(name)}"
        out = {
            "apiEndpoint": f"https://{rid}.execute-api.{REGION}.amazonaws.com",
            "executionArn": arn.format("execute-api", rid),
        }
    elif typ == "aws:ecr/repository:Repository":
        out = {
            "name": phys,
            "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{phys}",
            "registryId": ACCOUNT,
            "arn": arn.format("ecr", f"repository/{phys}"),
        }
        rid = phys
    elif typ == "docker-build:index:Image":
        digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        out = {"digest": digest, "ref": f"{inputs['tags'][0]}@{digest}"}
        rid = digest
    elif typ == "awsx:ec2:Vpc":
        out = {
            "vpcId": "vpc-0mock",
            "publicSubnetIds": ["subnet-pub-a", "subnet-pub-b"],
            "privateSubnetIds": ["subnet-priv-a", "subnet-priv-b"],
            "isolatedSubnetIds": ["subnet-iso-a", "subnet-iso-b"],
        }
    elif typ in ("aws:rds/parameterGroup:ParameterGroup", "aws:rds/subnetGroup:SubnetGroup"):
        out = {"name": phys.lower(), "arn": arn.format("rds", phys.lower())}
        rid = phys.lower()
    elif typ == "aws:ec2/securityGroup:SecurityGroup":
        rid = f"sg-{_short(name)}"
    elif typ in ("aws:sns/topic:Topic", "aws:cloudwatch/metricAlarm:MetricAlarm"):
        service = "sns" if "sns" in typ else "cloudwatch"
        out = {"name": phys, "arn": arn.format(service, phys)}
    elif typ == "aws:cloudwatch/dashboard:Dashboard":
        out = {"dashboardArn": f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{inputs['dashboardName']}"}
        rid = inputs["dashboardName"]
    elif typ == "aws:lambda/invocation:Invocation":
        out = {"result": json.dumps({"applied": True})}
    return rid, out


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.local = threading.local()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid, outputs = mock_outputs(args.typ, args.name, args.inputs)
        # Custom resources echo their inputs (as providers do); a remote component's inputs are
        # not its outputs (awsx Vpc's `natGateways` input is config, its output is resources).
        remote_component = args.typ.startswith("awsx:")
        state = dict(outputs) if remote_component else {**args.inputs, **outputs}
        self.local.last = (dict(args.inputs), state)
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "id": ACCOUNT,
                "userName": "AWS",
                "password": FAKE_ECR_PASSWORD,
                "authorizationToken": "QVdTOkZBS0U=",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z",
            }
        return {}


@dataclass
class Res:
    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    parent: str
    custom: bool
    dependencies: set[str]
    property_dependencies: dict[str, set[str]]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool

    def all_dependencies(self) -> set[str]:
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps |= urns
        return deps


class RecordingMonitor(MockMonitor):
    """MockMonitor that also keeps what the engine would see of each registration."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.records: list[Res] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == STACK_TYPE:
            return response
        inputs, state = self.mocks.local.last
        record = Res(
            urn=response.urn,
            type=request.type,
            name=request.name,
            id=response.id,
            inputs=inputs,
            state=state,
            parent=request.parent,
            custom=bool(request.custom),
            dependencies=set(request.dependencies),
            property_dependencies={
                key: set(value.urns) for key, value in request.propertyDependencies.items()
            },
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            delete_before_replace=bool(request.deleteBeforeReplace),
        )
        with self._lock:
            self.records.append(record)
        return response


# --------------------------------------------------------------------------- program runs


@dataclass
class Deployment:
    """Everything one run of the program registered."""

    label: str
    preview: bool
    config: dict[str, str]
    resources: list[Res]
    outputs: dict[str, Any]
    output_secrets: dict[str, bool]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Res]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str) -> Res:
        found = [r for r in self.resources if r.type == typ and r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name!r}, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Res:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children_of(self, parent: Res) -> list[Res]:
        return [r for r in self.resources if r.parent == parent.urn]


def run_program(
    config: dict[str, str],
    *,
    preview: bool,
    stack: str,
    secret_keys: list[str],
    label: str,
) -> Deployment:
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    runtime_settings.ROOT.set(None)  # a fresh root stack for this run
    pulumi.runtime.set_mocks(
        mocks, project="collections", stack=stack, preview=preview, monitor=monitor
    )
    runtime_config.set_all_config(config, secret_keys)
    runtime_settings.SETTINGS.rpc_manager.clear()

    def program() -> None:
        # As the language host does: run the program directory (Pulumi.yaml `main: infra/`).
        runpy.run_path(str(REPO_ROOT / "infra"), run_name="__main__")

    _sync_await(run_pulumi_func(program))

    root = runtime_settings.get_root_resource()
    outputs: dict[str, Any] = {}
    secrets: dict[str, bool] = {}
    for key, value in root.outputs.items():  # type: ignore[union-attr]
        out = pulumi.Output.from_input(value)
        outputs[key] = _sync_await(out.future())
        secrets[key] = bool(_sync_await(out.is_secret()))
    return Deployment(
        label=label,
        preview=preview,
        config=config,
        resources=list(monitor.records),
        outputs=outputs,
        output_secrets=secrets,
        calls=list(mocks.calls),
    )


_RUNS: dict[str, Deployment] = {}

# label -> (stack file, preview, config overrides)
RUNS: dict[str, tuple[str, bool, dict[str, str]]] = {
    "dev-preview": ("dev", True, {}),
    "dev-update": ("dev", False, {}),
    "prod-update": ("prod", False, {}),
    "dev-x86_64": (
        "dev",
        False,
        {"collections:architecture": "x86_64", "collections:alarmEmail": "ops@example.com"},
    ),
}


def deployment_for(label: str) -> Deployment:
    if label not in _RUNS:
        stack, preview, overrides = RUNS[label]
        _RUNS[label] = run_program(
            stack_config_with_secrets(stack) | overrides,
            preview=preview,
            stack=stack,
            secret_keys=list(FAKE_SECRETS),
            label=label,
        )
    return _RUNS[label]


# --------------------------------------------------------------------------- helpers for tests


def is_secret_value(value: Any) -> bool:
    """Whether an input, as the engine receives it, is marked secret."""
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value: Any) -> Any:
    """An input's plain value (secret wrappers removed, recursively)."""
    if is_secret_value(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def as_json(value: Any) -> Any:
    """A JSON document given as a string (policies, patterns) parsed; other values unchanged."""
    value = unwrap(value)
    return json.loads(value) if isinstance(value, str) else value
