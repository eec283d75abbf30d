"""The ``wam-eval`` command: one argparse tree, one module per command group."""

from __future__ import annotations

import os
import signal
import sys

import harness.cli.catalog as catalog
import harness.cli.gate as gate
import harness.cli.reports as reports
import harness.cli.robotwin as robotwin
import harness.cli.run as run
import harness.cli.serving as serving
from harness.cli.common import EXIT_FAILED, EXIT_USAGE, OneLineParser
from harness.errors import EnvError, UsageError

GROUPS = (run, reports, catalog, serving, robotwin, gate)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="wam-eval", description="Evaluate world-action models and their "
                                                        "step-distilled students.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def console_main() -> None:
    """The `wam-eval` command (and `python -m harness`): `wam-eval ... | head` ends quietly,
    like other Unix tools. Not in :func:`main`, which tests and embedders call in their own
    process, where a default SIGPIPE would kill them on any write to a closed socket."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = list(argv)  # recorded in the manifest (sys.argv is not ours when embedded)
    if getattr(args, "verbose", False):
        os.environ["WAM_EVAL_VERBOSE"] = "1"  # suites and the Ray runner let banners through
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"wam-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EnvError as exc:  # infrastructure gave up (e.g. the expert failed too often)
        print(f"wam-eval: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
