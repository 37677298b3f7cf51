"""Search index (to be written)."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Hook the index into the app (to be written)."""
