"""The Pulumi program of Collections: the whole AWS deployment in one dependency graph per stack.

``infra/__main__.py`` composes one ComponentResource per concern (``infra/components``); every
decision a test wants to see (configuration, IAM, environment, resource options, build metadata)
is a plain function in this package, so unit tests call it without the Pulumi engine.
"""

from pathlib import Path

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
IMAGES_DIR = REPO_ROOT / "images"
MIGRATIONS_DIR = REPO_ROOT / "runtime" / "db" / "migrations" / "versions"

PROJECT = "collections"
