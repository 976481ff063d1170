"""What the CLI tests share: the console script, running ``qtforge`` in-process, and an
environment that lets rich decide on its own whether output is a terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from qtforge._cli import main

QTFORGE = Path(sys.executable).with_name("qtforge")  # the console script of this venv
PROCESS_TIMEOUT = 30  # seconds; each process needs about one


def invoke(*args: str, terminal: bool = False) -> Result:
    """Run ``qtforge ARGS`` in this process, as from a pipe (or as on a terminal)."""
    env = {"TTY_COMPATIBLE": "1" if terminal else None, "FORCE_COLOR": None, "COLUMNS": "200"}
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


def plain_environment() -> dict[str, str]:
    """This environment without the variables that make rich treat any output as a terminal."""
    return {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
