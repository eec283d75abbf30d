"""`wam-eval compare` and `power`: the regression gate and its sizing."""

from __future__ import annotations

import argparse


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.gate.compare import compare_main

    return compare_main(args.base, args.cand, args.gate, args.out, args.format)


FIXED_ONLY = ("alpha", "power", "churn", "sided")
SEQUENTIAL_ONLY = ("episodes", "reps", "pairing")


def cmd_power(args: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.gate.power import power_main, sequential_main

    ignored = [f for f in (FIXED_ONLY if args.sequential else SEQUENTIAL_ONLY)
               if getattr(args, f) is not None]
    if ignored:
        mode = "--sequential" if args.sequential else "the fixed design (no --sequential)"
        raise UsageError(f"{', '.join('--' + f for f in ignored)} do(es) not apply to {mode}: "
                         f"drop {'them' if len(ignored) > 1 else 'it'}")
    if args.sequential:
        if args.episodes is None:
            raise UsageError("--sequential needs --episodes N (per task) to know the plan")
        return sequential_main(args.baseline, args.detect, args.tasks, args.episodes,
                               reps=args.reps or 300,
                               pairing=0.8 if args.pairing is None else args.pairing)
    return power_main(args.baseline, args.detect, alpha=0.05 if args.alpha is None else args.alpha,
                      power=0.8 if args.power is None else args.power, tasks=args.tasks,
                      churn=0.05 if args.churn is None else args.churn,
                      sided=args.sided or "one")


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
    power.add_argument("--alpha", type=float, default=None,
                       help="false-alarm rate (divided by --tasks; default 0.05)")
    power.add_argument("--power", type=float, default=None, help="chance to detect the drop (0.8)")
    power.add_argument("--tasks", type=int, default=1, help="tasks tested at once (alpha / tasks each)")
    power.add_argument("--churn", type=float, default=None,
                       help="paired: flips each way besides the drop (0.05)")
    power.add_argument("--sided", choices=["one", "two"], default=None,
                       help="one-sided (candidate worse, as the gate tests; default) or two-sided")
    power.add_argument("--sequential", action="store_true",
                       help="the adaptive gate (run --gate-against): expected episodes to a "
                            "verdict against the fixed design, simulated")
    power.add_argument("--episodes", type=int, default=None,
                       help="--sequential: episodes per task in the plan")
    power.add_argument("--reps", type=int, default=None, help="--sequential: simulated runs (300)")
    power.add_argument("--pairing", type=float, default=None,
                       help="--sequential: chance the shared initial state decides both "
                            "outcomes (0.8)")
    power.set_defaults(func=cmd_power)
