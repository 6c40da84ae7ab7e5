"""Images: the ECR repository (scan on push, lifecycle keeping the last N images) and the runtime
image, built from ``images/Dockerfile`` with the docker-build provider and pushed — or, in a stack
configured with ``imagesFromStack``, :class:`PromotedImage`: no repository, no build, the exact
digest another stack built and tested, read from that stack's outputs.

Functions reference the image by digest (``<repository>@sha256:…``), never by tag. The build is
single-platform (the functions' architecture) and carries no provenance/SBOM attestations: the
provider's embedded buildx (``exec=False``) builds with no attestations, so ECR receives a plain
image manifest, not an image index (which Lambda rejects). ``exec=True`` would shell out to the
docker-buildx CLI, which adds provenance by default; it stays off.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from infra import IMAGES_DIR, REPO_ROOT
from infra.build import BuildInfo, build_platform
from infra.config import ImagesConfig
from infra.references import (
    Check,
    equals,
    is_digest,
    is_repository_url,
    reference,
    require_output,
)

CACHE_TAG = "buildcache"
# Tag prefix the deploy workflow puts on every digest it promoted to another stack: the
# lifecycle policy never expires those, so a promoted function's image stays in the registry.
PROMOTED_TAG_PREFIX = "promoted-"
KEEP_PROMOTED_IMAGES = 100
# ECR actions a Lambda function in another account needs to pull an image.
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


def lifecycle_policy(keep_images: int) -> str:
    """Keep the build cache manifest, the promoted images and the newest ``keep_images`` images.

    An image matched by a rule is never expired by a rule of lower priority, so the "any" rule
    does not count the cache manifest or promoted images."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "keep the registry build cache",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPrefixList": [CACHE_TAG],
                        "countType": "imageCountMoreThan",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": "keep images promoted to other stacks",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPrefixList": [PROMOTED_TAG_PREFIX],
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_PROMOTED_IMAGES,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 3,
                    "description": f"keep the last {keep_images} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


def pull_policy(accounts: tuple[str, ...], region: str) -> str:
    """Let Lambda functions of ``accounts`` pull (and nothing else): the account principals for
    the deployer's CreateFunction/UpdateFunctionCode check, the Lambda service for the pull."""
    functions = [f"arn:aws:lambda:{region}:{account}:function:*" for account in accounts]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CrossAccountPull",
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in accounts]},
                    "Action": list(PULL_ACTIONS),
                },
                {
                    "Sid": "CrossAccountLambdaPull",
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": list(PULL_ACTIONS),
                    "Condition": {"StringLike": {"aws:sourceARN": functions}},
                },
            ],
        }
    )


def image_uri(repository_url: str, digest: str) -> str:
    """``<repository>@sha256:…``: the exact bytes that were built, whatever tags move later."""
    if not digest.startswith("sha256:"):
        raise ValueError(f"not an image digest: {digest!r}")
    return f"{repository_url}@{digest}"


def _unknown() -> pulumi.Output[str]:
    """A value known only after the update (what the engine shows as "output<string>")."""
    value: asyncio.Future[str | None] = asyncio.Future()
    value.set_result(None)
    known: asyncio.Future[bool] = asyncio.Future()
    known.set_result(False)
    return pulumi.Output(set(), value, known)


def digest_reference(repository_url: str, digest: str | None) -> pulumi.Output[str] | str:
    # A preview that skips the push may report no digest yet: the URI is then unknown, as it is
    # for any value computed during the update. Outside a preview a missing digest is an error.
    if not digest and pulumi.runtime.is_dry_run():
        return _unknown()
    return image_uri(repository_url, digest or "")


def context_path(path: Path) -> str:
    """Paths relative to the program's working directory, so state does not depend on where the
    repository is checked out (Pulumi runs the program from ``infra/``)."""
    return os.path.relpath(path, os.getcwd())


class Images(pulumi.ComponentResource):
    repository: aws.ecr.Repository
    image: docker_build.Image
    repository_url: pulumi.Output[str]
    digest: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    platform: str
    source_stack: str | None = None

    def __init__(
        self,
        name: str,
        cfg: ImagesConfig,
        *,
        architecture: str,
        region: str,
        build: BuildInfo,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:images:Images", name, None, opts)
        self.platform = build_platform(architecture)
        child = pulumi.ResourceOptions(parent=self)

        self.repository = aws.ecr.Repository(
            f"{name}-runtime",
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="MUTABLE",
            encryption_configurations=[{"encryption_type": "AES256"}],
            force_delete=cfg.force_delete_repository,
            opts=child,
        )
        if cfg.pull_accounts:
            aws.ecr.RepositoryPolicy(
                f"{name}-runtime-pull",
                repository=self.repository.name,
                policy=pull_policy(cfg.pull_accounts, region),
                opts=child,
            )
        aws.ecr.LifecyclePolicy(
            f"{name}-runtime-lifecycle",
            repository=self.repository.name,
            policy=lifecycle_policy(cfg.keep_images),
            opts=child,
        )
        self.repository_url = self.repository.repository_url

        token = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
        cache_ref = self.repository_url.apply(lambda url: f"{url}:{CACHE_TAG}")
        self.image = docker_build.Image(
            f"{name}-runtime-image",
            context=docker_build.BuildContextArgs(location=context_path(REPO_ROOT)),
            dockerfile=docker_build.DockerfileArgs(
                location=context_path(IMAGES_DIR / "Dockerfile")
            ),
            platforms=[docker_build.Platform(self.platform)],
            build_args={"GIT_SHA": build.git_sha, "BUILD_TIME": build.build_time},
            tags=[self.repository_url.apply(lambda url: f"{url}:{build.tag}")],
            push=True,
            exec_=False,
            registries=[
                docker_build.RegistryArgs(
                    address=self.repository_url,
                    username=token.user_name,
                    password=pulumi.Output.secret(token.password),
                )
            ],
            cache_from=[
                docker_build.CacheFromArgs(
                    registry=docker_build.CacheFromRegistryArgs(ref=cache_ref)
                )
            ],
            cache_to=[
                docker_build.CacheToArgs(
                    registry=docker_build.CacheToRegistryArgs(
                        ref=cache_ref,
                        mode=docker_build.CacheMode.MAX,
                        image_manifest=True,
                        oci_media_types=True,
                    )
                )
            ],
            opts=child,
        )
        self.digest = self.image.digest
        self.image_uri = pulumi.Output.all(self.repository_url, self.digest).apply(
            lambda args: digest_reference(args[0], args[1])
        )
        self.register_outputs(
            {
                "repositoryUrl": self.repository_url,
                "digest": self.digest,
                "imageUri": self.image_uri,
                "platform": self.platform,
            }
        )


class PromotedImage(pulumi.ComponentResource):
    """The image another stack of this project built, pushed and runs: deployed here by digest.

    Reads ``imageRepositoryUrl``, ``imageDigest``, ``imagePlatform`` and ``region`` from the source
    stack (:func:`infra.references.require_output`). The platform must be this stack's functions'
    architecture and the region this stack's (Lambda pulls only from ECR in its own region);
    anything missing or different fails the deployment with a message naming the stack and the
    output. No repository and no build exist in this stack.
    """

    repository_url: pulumi.Output[str]
    digest: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    platform: str
    source_stack: str

    def __init__(
        self,
        name: str,
        *,
        source_stack: str,
        architecture: str,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:images:PromotedImage", name, None, opts)
        self.source_stack = source_stack
        self.platform = build_platform(architecture)
        self.source = reference(f"{name}-source", source_stack, parent=self)

        def output(key: str, check: Check) -> pulumi.Output[Any]:
            return require_output(
                self.source, key, stack=source_stack, setting="imagesFromStack", check=check
            )

        self.repository_url = output("imageRepositoryUrl", is_repository_url)
        self.digest = output("imageDigest", is_digest)
        platform = output(
            "imagePlatform",
            equals(self.platform, f"this stack's functions run on {architecture}, i.e."),
        )
        source_region = output("region", equals(region, "Lambda pulls only from its own region,"))
        # Every check is part of the URI the functions get, so a failed one fails the update.
        self.image_uri = pulumi.Output.all(
            self.repository_url, self.digest, platform, source_region
        ).apply(lambda a: image_uri(a[0], a[1]))
        self.register_outputs(
            {
                "sourceStack": source_stack,
                "repositoryUrl": self.repository_url,
                "digest": self.digest,
                "imageUri": self.image_uri,
                "platform": self.platform,
            }
        )
