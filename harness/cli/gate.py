"""`wam-eval compare` and `power`: the regression gate and its sizing."""

from __future__ import annotations

import argparse

def cmd_compare(args: argparse.Namespace) -> int:
    from harness.gate.compare import compare_main

    return compare_main(args.base, args.cand, args.gate, args.out, args.format)


def cmd_power(args: argparse.Namespace) -> int:
    from harness.gate.power import power_main

    return power_main(args.baseline, args.detect, alpha=args.alpha, power=args.power,
                      tasks=args.tasks, churn=args.churn, sided=args.sided)


def add_commands(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser("compare", help="regression gate: a candidate run against a baseline "
                                              "run of the same episodes (exit 1 on regression)")
    compare.add_argument("base", metavar="BASE", help="baseline run folder")
    compare.add_argument("cand", metavar="CAND", help="candidate run folder")
    compare.add_argument("--gate", default=None, metavar="FILE",
                         help="gate policy, JSON or YAML (default: built-in)")
    compare.add_argument("--out", default=None, metavar="DIR",
                         help="write compare.{md,json,junit.xml,html} here")
    compare.add_argument("--format", choices=["md", "json", "junit", "html", "all"], default="md",
                         help="what to print (and write with --out); all: every format")
    compare.set_defaults(func=cmd_compare)

    power = sub.add_parser("power", help="episodes per task needed to detect a drop in success rate")
    power.add_argument("--baseline", type=float, required=True, help="baseline success rate, e.g. 0.9")
    power.add_argument("--detect", type=float, required=True, help="drop to detect, as a rate, e.g. 0.05")
    power.add_argument("--alpha", type=float, default=0.05, help="false-alarm rate (divided by --tasks)")
    power.add_argument("--power", type=float, default=0.8, help="chance to detect the drop")
    power.add_argument("--tasks", type=int, default=1, help="tasks tested at once (alpha / tasks each)")
    power.add_argument("--churn", type=float, default=0.05,
                       help="paired: flips each way besides the drop")
    power.add_argument("--sided", choices=["one", "two"], default="one",
                       help="one-sided (candidate worse, as the gate tests) or two-sided")
    power.set_defaults(func=cmd_power)
