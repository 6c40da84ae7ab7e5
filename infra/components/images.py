"""Images: the ECR repository (scan on push, lifecycle keeping the last N images) and the runtime
image, built from ``images/Dockerfile`` with the docker-build provider and pushed.

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

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from infra import IMAGES_DIR, REPO_ROOT
from infra.build import BuildInfo, build_platform
from infra.config import ImagesConfig

CACHE_TAG = "buildcache"


def lifecycle_policy(keep_images: int) -> str:
    """Keep the build cache manifest and the newest ``keep_images`` images, expire the rest."""
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

    def __init__(
        self,
        name: str,
        cfg: ImagesConfig,
        *,
        architecture: str,
        build: BuildInfo,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:images:Images", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.repository = aws.ecr.Repository(
            f"{name}-runtime",
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="MUTABLE",
            encryption_configurations=[{"encryption_type": "AES256"}],
            force_delete=cfg.force_delete_repository,
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
            platforms=[docker_build.Platform(build_platform(architecture))],
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
            }
        )
