"""The ``rnnparity`` command line: one module per subcommand (check, diff, verify, explain,
export, bench), the parser (:mod:`rnnparity.cli.parser`) and one table renderer
(:mod:`rnnparity.cli.table`)."""

from rnnparity.cli.parser import main

__all__ = ["main"]
