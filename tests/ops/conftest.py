"""Reuse the auth-enabled app factory of tests/access."""

from tests.access.conftest import make_client

__all__ = ["make_client"]
