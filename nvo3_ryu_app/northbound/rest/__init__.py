"""REST API v1."""

from .server import make_app  # noqa: F401
