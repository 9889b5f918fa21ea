"""``python -m dataplane``: benchmarks, the simulator and small tools.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen so that the CLI
starts fast and one broken optional dependency cannot take the others down.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (group, name) -> module.  group None means a top-level command.
COMMANDS: dict[tuple[str | None, str], tuple[str, str]] = {
    ("bench", "pingpong"): ("dataplane.bench.pingpong", "round trip and throughput of a transport against pyzmq and multiprocessing.Pipe"),
    ("bench", "steal"): ("dataplane.bench.steal", "live executor: p99 against load for partitioned, stealing and central queues"),
    ("bench", "overload"): ("dataplane.bench.overload", "admission control at 2x and 5x capacity, simulated and live"),
    ("bench", "fairness"): ("dataplane.bench.fairness", "noisy neighbour and weighted shares, simulated and live"),
    (None, "sim"): ("dataplane.sim.cli", "discrete-event simulator of the queueing policies"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataplane", description=__doc__.splitlines()[0])
    top = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for (group, name), (module, help_text) in COMMANDS.items():
        if group is None:
            sub = top.add_parser(name, help=help_text, add_help=False)
        else:
            if group not in groups:
                groups[group] = top.add_parser(group, help=f"{group} commands").add_subparsers(dest="subcommand", required=True)
            sub = groups[group].add_parser(name, help=help_text, add_help=False)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(args._module)
    # The chosen module owns its full argument grammar (including -h).
    prog = f"python -m dataplane {args.command}" + (f" {args.subcommand}" if getattr(args, "subcommand", None) else "")
    sub = argparse.ArgumentParser(prog=prog)
    module.add_arguments(sub)
    return int(module.run(sub.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())
