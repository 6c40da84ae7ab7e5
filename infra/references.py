"""Cross-stack data, read through ``pulumi.StackReference`` (DESIGN.md rule 2).

A stack reference reads the *outputs* of another stack at deployment time. Nothing is exported
into, or imported from, a shared registry the way CloudFormation exports work, so the producing
stack can replace, rename or delete anything it owns without a consumer ever locking it: a
consumer sees the new values the next time it deploys.

``StackReference.require_output`` raises a bare ``KeyError('imageDigest')`` when the output is
missing, which names neither the stack nor the setting that asked for it. :func:`require_output`
reads the output the same way (``get_output``, so the output's own secretness is kept) and fails
with a :class:`StackOutputError` naming the stack, the output, the setting and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from infra.config import NAMESPACE

Check = Callable[[Any], str | None]


class StackOutputError(Exception):
    """A referenced stack lacks an output this stack needs, or the output has a wrong value."""

    def __init__(
        self, stack: str, output: str, setting: str, problem: str, *, missing: bool = True
    ) -> None:
        self.stack = stack
        self.output = output
        self.setting = setting
        fix = (
            f"run `pulumi up --stack {stack}` with a version of its program that exports {output!r}"
            if missing
            else "make the two stacks agree"
        )
        super().__init__(
            f"Stack {stack!r} {problem} (read because {NAMESPACE}:{setting} = {stack}). "
            f"Fix: {fix}, or change {NAMESPACE}:{setting}."
        )


def qualified_stack_name(name: str, *, organization: str, project: str) -> str:
    """``<stack>`` means a stack of this project in this organization; anything else is kept."""
    return name if "/" in name else f"{organization}/{project}/{name}"


def reference(
    name: str, stack: str, *, parent: pulumi.Resource | None = None
) -> pulumi.StackReference:
    return pulumi.StackReference(name, stack_name=stack, opts=pulumi.ResourceOptions(parent=parent))


def check_output(
    outputs: dict[str, Any] | None,
    *,
    stack: str,
    output: str,
    setting: str,
    check: Check | None = None,
) -> Any:
    """The value of ``output`` in ``outputs`` (a stack's outputs), or a clear error."""
    value = (outputs or {}).get(output)
    if value is None or value == "" or value == []:
        raise StackOutputError(stack, output, setting, f"has no output {output!r}")
    if check is not None:
        problem = check(value)
        if problem:
            raise StackOutputError(
                stack, output, setting, f"output {output!r} {problem}", missing=False
            )
    return value


def require_output(
    ref: pulumi.StackReference,
    output: str,
    *,
    stack: str,
    setting: str,
    check: Check | None = None,
) -> pulumi.Output[Any]:
    """``ref.require_output(output)`` with a message that names the stack and the output."""
    return ref.get_output(output).apply(
        lambda value: check_output(
            {output: value}, stack=stack, output=output, setting=setting, check=check
        )
    )


# ------------------------------------------------------------------ value checks


def is_digest(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("sha256:") and len(value) == 71:
        return None
    return f"is not an image digest (sha256:<64 hex>): {value!r}"


def is_repository_url(value: Any) -> str | None:
    if isinstance(value, str) and ".dkr.ecr." in value and "@" not in value and ":" not in value:
        return None
    return (
        f"is not an ECR repository URL (<account>.dkr.ecr.<region>.amazonaws.com/<name>): {value!r}"
    )


def is_vpc_id(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("vpc-"):
        return None
    return f"is not a VPC id (vpc-…): {value!r}"


def subnet_ids(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not all(
            isinstance(s, str) and s.startswith("subnet-") for s in value
        ):
            return f"is not a list of subnet ids (subnet-…): {value!r}"
        if len(value) < minimum:
            return f"lists {len(value)} subnet(s); at least {minimum} (in different AZs) are needed"
        return None

    return check


def equals(expected: str, meaning: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value == expected else f"is {value!r}, but {meaning} {expected!r}"

    return check
