"""The ``qtforge`` command line; the console script calls `main`."""

from ._app import main

__all__ = ["main"]
