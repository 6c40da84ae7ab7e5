"""Fixtures for the infrastructure tests: the program's runs (see infra_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from infra_harness import Deployment, deployment_for


@pytest.fixture(scope="session", params=["dev-preview", "dev-update"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """The dev stack's program, run once with preview=True and once with preview=False."""
    return deployment_for(request.param)


@pytest.fixture(scope="session")
def dev() -> Deployment:
    return deployment_for("dev-update")


@pytest.fixture(scope="session")
def prod() -> Deployment:
    return deployment_for("prod-update")


@pytest.fixture(scope="session")
def dev_x86() -> Deployment:
    return deployment_for("dev-x86_64")


@pytest.fixture
def no_env_build_info(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("COLLECTIONS_GIT_SHA", "GITHUB_SHA", "COLLECTIONS_BUILD_TIME", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(var, raising=False)
    yield


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated classes when its modules are imported.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
