"""``collections dev``: the whole product on this machine, on loopback only.

PostgreSQL + pgvector (embedded, data in ``<data dir>/postgres``, password required), the AWS
emulator (moto behind an enforcing front, state in ``<data dir>/aws-state.pkl``) with the
stack's bucket, bus, rules, queues, table and user pool built from the topology, the
migrations, pipeline workers, and the API on http://127.0.0.1:8000. The data directory is
``.local`` unless ``--data-dir`` (or ``COLLECTIONS_LOCAL_DIR``) says otherwise; the CLI finds it
again from any directory (``runtime.cli.profiles``). Ctrl-C stops everything and keeps the data
for the next start.

Secrets of this installation, each generated at the first start and kept in the data directory
with mode 0600: the token signing key, the AWS credentials the processes sign their calls with,
the database password, the demo user's password. The cursor key and any API keys live in the
emulator's SSM as SecureString parameters, as on AWS.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.config import Settings
from runtime.local.cloud import bootstrap
from runtime.local.cognito import ensure_pool, ensure_user
from runtime.local.discovery import default_data_dir, forget_data_dir, remember_data_dir
from runtime.local.emulator import LocalEmulator
from runtime.local.gate import Credentials
from runtime.local.identity import AwsCredentials, SigningKey
from runtime.local.postgres import LocalPostgres

if TYPE_CHECKING:
    from sqlalchemy import Engine

STACK = "local"


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path = field(default_factory=default_data_dir)
    api_port: int = 8000
    aws_port: int = 4566
    postgres_port: int = 54329
    workers: int = 2
    api_workers: int = 1
    visibility_timeout_s: int | None = None


class PortInUse(RuntimeError):
    pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class EmbedderMismatch(RuntimeError):
    """The data folder's vectors were made by another embedder than the one configured."""


def check_vector_dimension(engine: Engine, settings: Settings) -> None:
    """Refuse to start when the configured embedder's vectors cannot be stored or compared with
    the ones already in the database (its vector column was sized by the embedder configured when
    the data folder was created)."""
    from runtime.db.migrate import vector_dimension
    from runtime.providers.factory import embedder_kind, embedding_dimension

    stored, wanted = vector_dimension(engine), embedding_dimension(settings)
    if stored is not None and stored != wanted:
        kind = embedder_kind(settings)
        name = settings.local_embedding_model if kind == "local" else settings.voyage_model
        raise EmbedderMismatch(
            f"this data folder holds {stored}-d vectors, but the configured embedder ({kind}, "
            f"{name}) makes {wanted}-d ones: start with the embedder it was created with, or "
            "use a new data folder (--data-dir) for this one"
        )


def invocation_reports(data_dir: Path) -> Path:
    """One JSON line per pipeline invocation: duration, memory size, max memory used, error."""
    return data_dir / "invocations.jsonl"


def profile_file(data_dir: Path) -> Path:
    """Where ``collections dev`` tells the CLI how to reach it (the ``local`` profile)."""
    return data_dir / "dev.json"


def credentials_file(data_dir: Path) -> Path:
    return data_dir / "aws-credentials"


def signing_key_file(data_dir: Path) -> Path:
    return data_dir / "identity-key.pem"


class DevStack:
    def __init__(self, options: DevOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir.resolve()
        self.postgres = LocalPostgres(self.data_dir / "postgres", port=options.postgres_port)
        self.emulator: LocalEmulator | None = None
        self.save_problems: list[str] = []
        self.children: list[subprocess.Popen] = []

    def start(self) -> dict[str, str]:
        started = time.monotonic()
        for flag, port in (
            ("--port", self.options.api_port),
            ("--aws-port", self.options.aws_port),
            ("--postgres-port", self.options.postgres_port),
        ):
            if not port_is_free(port):
                raise PortInUse(
                    f"port {port} on 127.0.0.1 is in use (another `collections dev`?); "
                    f"stop it or choose another with {flag}"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        database_url = self.postgres.create_database("collections")
        aws = AwsCredentials.load_or_create(credentials_file(self.data_dir))
        # This process and its children sign their AWS calls with the installation's key, read
        # from its file: credentials in the environment would take precedence, so they go.
        AwsCredentials.scrub(os.environ)  # type: ignore[arg-type]
        os.environ.update(aws.environment())
        self.emulator = LocalEmulator(
            self.data_dir / "aws-state.pkl",
            port=self.options.aws_port,
            credentials=Credentials(aws.access_key_id, aws.secret_access_key),
            signing_key=SigningKey.load_or_create(signing_key_file(self.data_dir)),
        )
        self.emulator.start()
        cloud = bootstrap(
            self.emulator.endpoint,
            stack=STACK,
            visibility_timeout_s=self.options.visibility_timeout_s,
        )
        self.cloud = cloud
        idp = cloud.client("cognito-idp")
        pool = ensure_pool(idp)
        demo = ensure_user(idp, pool, self.data_dir / "demo-user.json")

        env = {
            **os.environ,
            **cloud.environment(),
            **self.postgres.environment(),
            "COLLECTIONS_DATABASE_URL": database_url,
            "COLLECTIONS_CURSOR_KEY_PARAM": ensure_cursor_key(cloud.client("ssm"), stack=STACK),
            "COLLECTIONS_COGNITO_USER_POOL_ID": pool.user_pool_id,
            "COLLECTIONS_COGNITO_APP_CLIENT_ID": pool.app_client_id,
            "COLLECTIONS_COGNITO_JWKS_URL": (
                f"{self.emulator.endpoint}/{pool.user_pool_id}/.well-known/jwks.json"
            ),
            "COLLECTIONS_LOCAL_CLOUD": json.dumps(asdict(cloud)),
            "COLLECTIONS_WEB_DEMO_USERNAME": demo.username,
            "COLLECTIONS_WEB_SIGN_IN_HINT": (
                f"Local mode: sign in as {demo.username}; the password is in "
                f"{self.data_dir / 'demo-user.json'}."
            ),
        }
        providers = {
            "analyzer": _provider_label(
                env, "ANTHROPIC_API_KEY", "Claude (Anthropic API)", "offline (OCR + heuristics)"
            ),
            "embedder": _provider_label(
                env, "VOYAGE_API_KEY", "Voyage AI", "offline (all-MiniLM-L6-v2)"
            ),
        }
        store_api_keys(cloud.client("ssm"), env, stack=STACK)
        self._migrate(env)
        api_url = f"http://127.0.0.1:{self.options.api_port}"
        self.children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runtime.local.api_server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.options.api_port),
                    "--workers",
                    str(max(1, self.options.api_workers)),
                ],
                env=env,
            )
        )
        self.worker_env = env
        for index in range(self.options.workers):
            self.children.append(self._spawn_worker(index))
        self._wait_for_api(api_url)

        profile = {
            "api_url": api_url,
            "region": cloud.environment()["COLLECTIONS_REGION"],
            "cognito_endpoint": self.emulator.endpoint,
            "user_pool_id": pool.user_pool_id,
            "app_client_id": pool.app_client_id,
        }
        profile_file(self.data_dir).write_text(json.dumps(profile, indent=2))
        remember_data_dir(self.data_dir)
        return {
            **profile,
            "data_dir": str(self.data_dir),
            "demo_user": demo.username,
            "demo_credentials": str(self.data_dir / "demo-user.json"),
            "started_in": f"{time.monotonic() - started:.1f} s",
            **providers,
        }

    def _migrate(self, env: dict[str, str]) -> None:
        from sqlalchemy import create_engine

        from runtime.db.migrate import upgrade

        os.environ.update(env)  # the migration reads the settings (the vector dimension)
        engine = create_engine(env["COLLECTIONS_DATABASE_URL"])
        try:
            upgrade(engine)
            check_vector_dimension(engine, Settings())
        finally:
            engine.dispose()

    def _wait_for_api(self, api_url: str, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.children[0].poll() is not None:
                raise RuntimeError("the API process exited during start-up")
            try:
                # a busy machine answers slowly: a short timeout would never see the answer
                with urllib.request.urlopen(f"{api_url}/health", timeout=10) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer on {api_url} within {timeout_s:.0f} s")

    def _spawn_worker(self, index: int) -> subprocess.Popen:
        command = [
            sys.executable,
            "-m",
            "runtime.local.worker",
            "--reports",
            str(invocation_reports(self.data_dir)),
        ]
        if index == 0:
            command.append("--schedules")
        return subprocess.Popen(command, env=self.worker_env)

    def supervise(self) -> list[str]:
        """Restart workers that died (their unfinished events are delivered again); the API
        process dying stops everything. (Workers print what they dead-letter themselves.)"""
        if self.children[0].poll() is not None:
            raise RuntimeError(f"the API process exited ({self.children[0].returncode})")
        lines = []
        for index, worker in enumerate(self.children[1:]):
            if worker.poll() is not None:
                lines.append(f"! worker {index} exited ({worker.returncode}); restarting it")
                self.children[index + 1] = self._spawn_worker(index)
        return lines

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        try:
            if self.emulator is not None:
                self.save_problems = self.emulator.stop()
        finally:
            self.postgres.stop()
            forget_data_dir(self.data_dir)


API_KEYS = {
    "ANTHROPIC_API_KEY": "anthropicApiKey",
    "VOYAGE_API_KEY": "voyageApiKey",
    "TAVILY_API_KEY": "tavilyApiKey",  # optional: the assistant's web search
}


def store_api_keys(ssm: Any, env: dict[str, str], *, stack: str) -> None:
    """As on AWS: each key present becomes an SSM SecureString (/collections/<stack>/<name>),
    the processes get the parameter's name, and the value leaves their environment."""
    for variable, name in API_KEYS.items():
        value = env.pop(variable, "").strip()
        if not value:
            continue
        parameter = f"/collections/{stack}/{name}"
        ssm.put_parameter(Name=parameter, Value=value, Type="SecureString", Overwrite=True)
        env[f"COLLECTIONS_{variable}_PARAM"] = parameter


CURSOR_KEY = "cursorKey"


def ensure_cursor_key(ssm: Any, *, stack: str) -> str:
    """The page cursors' MAC key, a SecureString like on AWS: generated at the first start."""
    import secrets

    parameter = f"/collections/{stack}/{CURSOR_KEY}"
    try:
        ssm.get_parameter(Name=parameter, WithDecryption=False)
    except ssm.exceptions.ParameterNotFound:
        ssm.put_parameter(Name=parameter, Value=secrets.token_urlsafe(32), Type="SecureString")
    return parameter


def _provider_label(env: dict[str, str], key: str, real: str, offline: str) -> str:
    return real if env.get(key, "").strip() else offline


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(options: DevOptions) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops as cleanly as Ctrl-C
    stack = DevStack(options)
    try:
        info = stack.start()
    except PortInUse as error:
        print(f"collections dev: {error}", file=sys.stderr)
        return 2
    except EmbedderMismatch as error:
        stack.stop()
        print(f"collections dev: {error}", file=sys.stderr)
        return 2
    except BaseException:
        stack.stop()
        raise
    print(BANNER.format(**info), flush=True)
    try:
        while True:
            for line in stack.supervise():
                print(line, flush=True)
            time.sleep(1)
    except RuntimeError as error:
        print(f"{error}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stack.stop()
        for line in stack.save_problems:
            print(line, file=sys.stderr, flush=True)
        print(f"stopped; data kept in {stack.data_dir}", flush=True)


BANNER_FIRST_LINE = "Collections is running locally"
BANNER = """
Collections is running locally (started in {started_in}).

  web app      {api_url}/
  API          {api_url}        interactive docs: {api_url}/docs
  data         {data_dir}
  analysis     {analyzer}
  embeddings   {embedder}
  demo user    {demo_user}  (password in {demo_credentials})

In another shell:
  .venv/bin/collections login          # signs in as the demo user

  .venv/bin/collections upload PATH... --wait
  .venv/bin/collections search "what you remember"
  .venv/bin/collections ask "which restaurants did I save?"

Ctrl-C stops everything; the data stays in {data_dir} for the next start.
"""
