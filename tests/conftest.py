"""Shared test helpers: how a test that needs something missing skips (or fails in CI)."""

import os

import pytest


def need(condition: bool, reason: str, fix: str):
    """Skip with the reason and the command that fixes it; under CI=true, fail."""
    if condition:
        return
    msg = f"{reason} -- {fix}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test, but {msg}", pytrace=False)
    pytest.skip(msg)
