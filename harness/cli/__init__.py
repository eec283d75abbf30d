"""The ``wam-eval`` command line: :mod:`harness.cli.main` builds one argparse tree from the
command groups (``run``, ``reports``, ``catalog``, ``serving``, ``robotwin``, ``gate``)."""

from harness.cli.main import build_parser, console_main, main

__all__ = ["build_parser", "console_main", "main"]
