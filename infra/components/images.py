"""Images: the ECR repository (scan on push, lifecycle keeping the last N builds) and the runtime
images, one per ``Function.image`` of the topology, each built from ``images/Dockerfile`` (build
argument ``IMAGE``: the dependency group it installs on top of the shared set) with the
docker-build provider and pushed — or, in a stack configured with ``imagesFromStack``,
:class:`PromotedImage`: no repository, no build, the exact digests another stack built and
tested, read from that stack's outputs. The images are promoted as a set.

Functions reference their image by digest (``<repository>@sha256:…``), never by tag. The build is
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
from runtime.topology import images as topology_images

CACHE_TAG = "buildcache"
# Tag prefix the deploy workflow puts on every digest it promoted to another stack: the
# lifecycle policy never expires those, so a promoted function's image stays in the registry.
PROMOTED_TAG_PREFIX = "promoted-"
KEEP_PROMOTED_IMAGES = 100
# ECR actions a Lambda function in another account needs to pull an image.
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


def lifecycle_policy(keep_images: int, images: int = 1) -> str:
    """Keep each image's build cache manifest, the promoted images and the newest
    ``keep_images`` builds of each of the ``images`` images (one build pushes all of them).

    An image matched by a rule is never expired by a rule of lower priority, so the "any" rule
    does not count the cache manifests or promoted images."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "keep the registry build cache of each image",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPrefixList": [CACHE_TAG],
                        "countType": "imageCountMoreThan",
                        "countNumber": images,
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
                        "countNumber": KEEP_PROMOTED_IMAGES * images,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 3,
                    "description": f"keep the last {keep_images} builds of each image",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images * images,
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


def uri_map(
    repository_url: pulumi.Input[str], digests: dict[str, pulumi.Output[str]]
) -> dict[str, pulumi.Output[str]]:
    """Each image's ``<repository>@sha256:…``."""
    return {
        image: pulumi.Output.all(repository_url, digest).apply(
            lambda args: digest_reference(args[0], args[1])
        )
        for image, digest in digests.items()
    }


def context_path(path: Path) -> str:
    """Paths relative to the program's working directory, so state does not depend on where the
    repository is checked out (Pulumi runs the program from ``infra/``)."""
    return os.path.relpath(path, os.getcwd())


class Images(pulumi.ComponentResource):
    repository: aws.ecr.Repository
    builds: dict[str, docker_build.Image]
    repository_url: pulumi.Output[str]
    digests: dict[str, pulumi.Output[str]]
    image_uris: dict[str, pulumi.Output[str]]
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
        images: tuple[str, ...] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:images:Images", name, None, opts)
        self.platform = build_platform(architecture)
        images = images or topology_images()
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
            policy=lifecycle_policy(cfg.keep_images, len(images)),
            opts=child,
        )
        self.repository_url = self.repository.repository_url

        token = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
        self.builds = {image: self._build(name, image, build, token, child) for image in images}
        self.digests = {image: b.digest for image, b in self.builds.items()}
        self.image_uris = uri_map(self.repository_url, self.digests)
        self.register_outputs(
            {
                "repositoryUrl": self.repository_url,
                "digests": self.digests,
                "imageUris": self.image_uris,
                "platform": self.platform,
            }
        )

    def _build(
        self,
        name: str,
        image: str,
        build: BuildInfo,
        token: pulumi.Output[Any],
        opts: pulumi.ResourceOptions,
    ) -> docker_build.Image:
        cache_ref = self.repository_url.apply(lambda url: f"{url}:{CACHE_TAG}-{image}")
        return docker_build.Image(
            f"{name}-runtime-{image}",
            context=docker_build.BuildContextArgs(location=context_path(REPO_ROOT)),
            dockerfile=docker_build.DockerfileArgs(
                location=context_path(IMAGES_DIR / "Dockerfile")
            ),
            platforms=[docker_build.Platform(self.platform)],
            build_args={
                "IMAGE": image,
                "GIT_SHA": build.git_sha,
                "BUILD_TIME": build.build_time,
            },
            tags=[self.repository_url.apply(lambda url: f"{url}:{build.tag}-{image}")],
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
            opts=opts,
        )


class PromotedImage(pulumi.ComponentResource):
    """The images another stack of this project built, pushed and runs: deployed here by digest,
    as a set.

    Reads ``imageRepositoryUrl``, ``imageDigests`` (image name -> digest), ``imagePlatform`` and
    ``region`` from the source stack (:func:`infra.references.require_output`). Every image this
    stack's topology names must be there with a digest; the platform must be this stack's
    functions' architecture and the region this stack's (Lambda pulls only from ECR in its own
    region); anything missing or different fails the deployment with a message naming the stack
    and the output. No repository and no build exist in this stack.
    """

    repository_url: pulumi.Output[str]
    digests: dict[str, pulumi.Output[str]]
    image_uris: dict[str, pulumi.Output[str]]
    platform: str
    source_stack: str

    def __init__(
        self,
        name: str,
        *,
        source_stack: str,
        architecture: str,
        region: str,
        images: tuple[str, ...] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:images:PromotedImage", name, None, opts)
        self.source_stack = source_stack
        self.platform = build_platform(architecture)
        images = images or topology_images()
        self.source = reference(f"{name}-source", source_stack, parent=self)

        def output(key: str, check: Check) -> pulumi.Output[Any]:
            return require_output(
                self.source, key, stack=source_stack, setting="imagesFromStack", check=check
            )

        self.repository_url = output("imageRepositoryUrl", is_repository_url)
        digests = output("imageDigests", has_digests_of(images))
        platform = output(
            "imagePlatform",
            equals(self.platform, f"this stack's functions run on {architecture}, i.e."),
        )
        source_region = output("region", equals(region, "Lambda pulls only from its own region,"))
        # Every check is part of each URI the functions get, so a failed one fails the update.
        checked = pulumi.Output.all(digests, platform, source_region).apply(lambda a: a[0])
        self.digests = {image: checked.apply(lambda d, i=image: d[i]) for image in images}
        self.image_uris = {
            image: pulumi.Output.all(self.repository_url, digest).apply(
                lambda a: image_uri(a[0], a[1])
            )
            for image, digest in self.digests.items()
        }
        self.register_outputs(
            {
                "sourceStack": source_stack,
                "repositoryUrl": self.repository_url,
                "digests": self.digests,
                "imageUris": self.image_uris,
                "platform": self.platform,
            }
        )


def has_digests_of(images: tuple[str, ...]) -> Check:
    """The source stack's ``imageDigests`` holds a digest for each of ``images``."""

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"is not a map of image name to digest: {value!r}"
        missing = [image for image in images if image not in value]
        if missing:
            return f"has no digest for the image(s) {', '.join(missing)}"
        for image in images:
            problem = is_digest(value[image])
            if problem:
                return f"[{image!r}] {problem}"
        return None

    return check
