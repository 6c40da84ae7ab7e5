"""The Collections policy pack (``pulumi preview/up --policy-pack policy``); rules in
:mod:`policy.rules`, entry point ``policy/__main__.py``."""
