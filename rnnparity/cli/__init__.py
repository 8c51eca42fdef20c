"""The ``rnnparity`` command line."""

from rnnparity.cli.commands import main

__all__ = ["main"]
