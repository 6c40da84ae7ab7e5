"""Harness: run the real Pulumi program (``infra/``) under Pulumi mocks, with no CLI.

The program is executed exactly as the Pulumi language host does (``runpy.run_path`` on the
``infra/`` directory), once per mode: ``preview=True`` and ``preview=False`` with the dev stack's
own ``Pulumi.dev.yaml`` (plus recognisable fake secrets), and once with ``Pulumi.prod.yaml``.

A recording monitor keeps, for every registered resource, its URN (computed as the engine does:
top-level resources carry no ``pulumi:pulumi:Stack$`` prefix), type, inputs (as the engine
would receive them), its parent, its dependencies (explicit ``depends_on`` and the ones its
inputs carry) and the options the engine sees (protect, retain_on_delete,
delete_before_replace, replace_on_changes, aliases), so tests assert on plain dicts. Stack
references (``pulumi:pulumi:StackReference``, a read) are answered from ``stack_outputs`` and
recorded in ``Deployment.reads``.

Mock outputs derive from the logical name, so two runs that differ only in a resource's inputs
give that resource the same identity (an in-place update). ``function_salt`` gives every Lambda
function an unguessable name and ARN per run instead, as if each had been replaced: tests use it
to prove that everything referring to a function takes the value from the function's outputs.

``set_mocks`` is process-global; each run re-points it at a fresh monitor and resets the root
stack, so the three runs do not see each other's resources.
"""

from __future__ import annotations

import asyncio
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
STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
ORGANIZATION = "acme"


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


def mock_outputs(
    typ: str, name: str, inputs: dict[str, Any], *, function_salt: str | None = None
) -> tuple[str, dict[str, Any]]:
    """(physical id, outputs) for a resource, shaped like the provider's (camelCase keys)."""
    phys = f"{name}-{_short(name)}"
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    out: dict[str, Any] = {}
    rid = f"{phys}-id"
    if typ == "aws:lambda/function:Function":
        if function_salt is not None:  # a new, unguessable identity: as after a replacement
            phys = f"{name}-{hashlib.sha256((function_salt + name).encode()).hexdigest()[:20]}"
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
            "resourceId": f"db-MOCK{_short(name).upper()}",
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
        # The digest is a function of what is built (platform, build args...): a different
        # architecture or commit gives a different image, as a real build does.
        built = json.dumps({"name": name, "inputs": inputs}, sort_keys=True, default=str)
        digest = "sha256:" + hashlib.sha256(built.encode()).hexdigest()
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
    elif typ == "aws:kms/key:Key":
        rid = f"mrk-{hashlib.sha256(name.encode()).hexdigest()[:32]}"
        out = {"arn": arn.format("kms", f"key/{rid}"), "keyId": rid}
    elif typ == "aws:cloudwatch/dashboard:Dashboard":
        out = {"dashboardArn": f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{inputs['dashboardName']}"}
        rid = inputs["dashboardName"]
    elif typ == "aws:lambda/invocation:Invocation":
        out = {"result": json.dumps({"applied": True})}
    return rid, out


class Mocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        *,
        stack_outputs: dict[str, dict[str, Any]] | None = None,
        function_salt: str | None = None,
    ) -> None:
        self.local = threading.local()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.stack_outputs = stack_outputs or {}
        self.function_salt = function_salt

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == STACK_REFERENCE_TYPE:
            # A read of another stack: its outputs, as the engine returns them.
            stack = args.inputs["name"]
            if stack not in self.stack_outputs:
                raise Exception(f"unknown stack {stack!r} (not in the harness's stack_outputs)")
            state = {"name": stack, "outputs": dict(self.stack_outputs[stack])}
            self.local.last = (dict(args.inputs), state)
            return stack, state
        rid, outputs = mock_outputs(
            args.typ, args.name, args.inputs, function_salt=self.function_salt
        )
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
    replace_on_changes: list[str] = field(default_factory=list)
    # Each alias as the engine receives it: {"urn": ...} or the spec's fields.
    aliases: list[dict[str, Any]] = field(default_factory=list)

    def all_dependencies(self) -> set[str]:
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps |= urns
        return deps


def alias_record(alias: Any) -> dict[str, Any]:
    if alias.HasField("urn"):
        return {"urn": alias.urn}
    spec = alias.spec
    return {
        "name": spec.name,
        "type": spec.type,
        "stack": spec.stack,
        "project": spec.project,
        "parentUrn": spec.parentUrn,
        "noParent": spec.noParent,
    }


def engine_urn(stack: str, project: str, parent: str, typ: str, name: str) -> str:
    """The URN the engine gives a resource: the parent's qualified type is prefixed, except for
    the root stack's (top-level resources are ``urn:pulumi:<stack>::<project>::<type>::<name>``)."""
    qualified = typ
    if parent:
        parent_type = parent.split("::")[2]
        if parent_type != STACK_TYPE:
            qualified = f"{parent_type}${typ}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


class RecordingMonitor(MockMonitor):
    """MockMonitor that also keeps what the engine would see of each registration."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.records: list[Res] = []
        self.reads: list[Res] = []
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        from pulumi.runtime.settings import get_project, get_stack

        return engine_urn(get_stack(), get_project(), parent, type_, name)

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        inputs, state = self.mocks.local.last
        record = Res(
            urn=response.urn,
            type=request.type,
            name=request.name,
            id=request.id,
            inputs=inputs,
            state=state,
            parent=request.parent,
            custom=True,
            dependencies=set(request.dependencies),
            property_dependencies={},
            protect=False,
            retain_on_delete=False,
            delete_before_replace=False,
        )
        with self._lock:
            self.reads.append(record)
        return response

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
            replace_on_changes=list(request.replaceOnChanges),
            aliases=[alias_record(a) for a in request.aliases],
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
    reads: list[Res] = field(default_factory=list)

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
    stack_outputs: dict[str, dict[str, Any]] | None = None,
    function_salt: str | None = None,
) -> Deployment:
    # A fresh event loop per run: a failed run's unfinished outputs can never touch the next.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = Mocks(stack_outputs=stack_outputs, function_salt=function_salt)
    monitor = RecordingMonitor(mocks)
    runtime_settings.ROOT.set(None)  # a fresh root stack for this run
    pulumi.runtime.set_mocks(
        mocks,
        project="collections",
        stack=stack,
        preview=preview,
        monitor=monitor,
        organization=ORGANIZATION,
    )
    runtime_config.set_all_config(config, secret_keys)
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()  # outstanding outputs of an earlier (failed) run

    def program() -> None:
        # As the language host does: run the program directory (Pulumi.yaml `main: infra/`).
        runpy.run_path(str(REPO_ROOT / "infra"), run_name="__main__")

    try:
        _sync_await(run_pulumi_func(program))
    except BaseException:
        _discard(loop)
        raise

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
        reads=list(monitor.reads),
    )


def _discard(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a failed run left on its event loop, so nothing of it runs again. Its
    hundreds of outputs that carry the run's exception are dropped silently (asyncio would log
    each one's traceback when it is garbage-collected)."""
    loop.set_exception_handler(lambda _loop, _context: None)
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


_RUNS: dict[str, Deployment] = {}

# Stacks the runs may reference, by fully qualified name -> the label of the run whose
# outputs that stack has (prod promotes dev's image: `imagesFromStack: dev` in Pulumi.prod.yaml).
REFERENCED_STACKS: dict[str, str] = {f"{ORGANIZATION}/collections/dev": "dev-update"}

# label -> (stack file, preview, config overrides)
RUNS: dict[str, tuple[str, bool, dict[str, str]]] = {
    "dev-preview": ("dev", True, {}),
    "dev-update": ("dev", False, {}),
    "prod-preview": ("prod", True, {}),
    "prod-update": ("prod", False, {}),
    "dev-x86_64": (
        "dev",
        False,
        {"collections:architecture": "x86_64", "collections:alarmEmail": "ops@example.com"},
    ),
}


def referenced_outputs() -> dict[str, dict[str, Any]]:
    """The outputs of the stacks a run may reference (other runs' own outputs)."""
    return {stack: deployment_for(label).outputs for stack, label in REFERENCED_STACKS.items()}


def deployment_for(label: str) -> Deployment:
    if label not in _RUNS:
        stack, preview, overrides = RUNS[label]
        config = stack_config_with_secrets(stack) | overrides
        refs = referenced_outputs() if stack != "dev" else {}
        _RUNS[label] = run_program(
            config,
            preview=preview,
            stack=stack,
            secret_keys=list(FAKE_SECRETS),
            label=label,
            stack_outputs=refs,
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


# --------------------------------------------------------------------------- URNs and aliases


def urn_name(urn: str) -> str:
    return urn.split("::")[3]


def urn_type(urn: str) -> str:
    """The resource's own type (the last segment of the qualified type)."""
    return urn.split("::")[2].split("$")[-1]


def alias_urns(res: Res, by_urn: dict[str, Res]) -> set[str]:
    """Every earlier URN the engine would match ``res`` against, as it computes them: the
    resource's own aliases (an alias spec defaults to the resource's current name, type, stack,
    project and parent), plus one per alias of its parent, inherited the way the engine does it
    (a child whose name starts with the parent's name takes the aliased parent's name)."""
    parts = res.urn.split("::")
    stack, project = parts[0].removeprefix("urn:pulumi:"), parts[1]
    found: set[str] = set()
    for alias in res.aliases:
        if "urn" in alias:
            found.add(alias["urn"])
            continue
        parent = "" if alias["noParent"] else (alias["parentUrn"] or res.parent)
        found.add(
            engine_urn(
                alias["stack"] or stack,
                alias["project"] or project,
                parent,
                alias["type"] or res.type,
                alias["name"] or res.name,
            )
        )
    parent_res = by_urn.get(res.parent)
    if parent_res is not None:
        for parent_alias in alias_urns(parent_res, by_urn):
            name = res.name
            if name.startswith(parent_res.name):
                name = urn_name(parent_alias) + name[len(parent_res.name) :]
            found.add(engine_urn(stack, project, parent_alias, res.type, name))
    found.discard(res.urn)
    return found


def urn_template(urn: str, stack: str) -> str:
    """A URN with its stack replaced by ``{stack}`` (the committed list holds these)."""
    prefix = f"urn:pulumi:{stack}::"
    assert urn.startswith(prefix), urn
    return "urn:pulumi:{stack}::" + urn[len(prefix) :]


def check_urns(
    resources: list[Res], committed: list[str], *, stack: str, types: set[str]
) -> list[str]:
    """Problems with the URNs of the resources of ``types`` against the committed templates.

    A resource whose URN is not committed passes only if one of its alias URNs is (a declared
    rename or re-parent); a committed URN that no resource has or aliases is a resource that
    disappeared (deleted or renamed without an alias). Each problem names the URNs involved.
    """
    expected = {c.replace("{stack}", stack) for c in committed}
    by_urn = {r.urn: r for r in resources}
    claimed: set[str] = set()
    problems: list[str] = []
    for r in resources:
        if r.type not in types:
            continue
        if r.urn in expected:
            claimed.add(r.urn)
            continue
        via_alias = alias_urns(r, by_urn) & expected
        if via_alias:
            claimed |= via_alias
            continue
        problems.append(
            f"{r.type} {r.urn} is not in tests/infra/stateful_urns.json and declares no alias to "
            "a URN there: Pulumi would create a new, empty resource and delete the old one. "
            "Declare an alias (infra/options.py ALIASES) or, for a new resource, add its URN."
        )
    for urn in sorted(expected - claimed):
        problems.append(
            f"{urn} (tests/infra/stateful_urns.json) is gone: no resource has that URN or an "
            "alias to it, so Pulumi would delete it. Declare an alias on the renamed resource."
        )
    return problems
