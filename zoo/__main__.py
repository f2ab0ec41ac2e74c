"""``python -m zoo``: build every zoo model for every available target and print one table.

Examples::

    python -m zoo                                  # everything (make zoo)
    python -m zoo --models resnet,lstm --targets onnx
    python -m zoo --fast                           # the quick subset
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from zoo.registry import ENTRIES, entry
from zoo.suite import Row, available_targets, format_table, run_model

# Timing every artifact against float costs seconds to minutes per target (tflite, tvm,
# pytorch compile); by default only onnx is timed, the others build with --no-latency.
DEFAULT_LATENCY = "onnx"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--targets", help="comma-separated targets (default: qconvert targets --available --names)")
    ap.add_argument("--fast", action="store_true", help="only the quick subset that make test builds")
    ap.add_argument("--latency", default=DEFAULT_LATENCY,
                    help=f"comma-separated targets to time against float, 'all' or 'none' (default: {DEFAULT_LATENCY})")
    ap.add_argument("--eval-views", type=int, default=None,
                    help="evaluation samples per model (default: zoo.data.COUNTS, 512); fewer keep a big network's build short")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per build before it counts as timed out (default 1800)")
    ap.add_argument("--out", type=Path, default=Path("OUT/zoo"), help="where builds, data and table.md go (default OUT/zoo)")
    args = ap.parse_args(argv)
    try:
        chosen = [entry(n) for n in args.models.split(",")] if args.models else list(ENTRIES)
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2
    if args.fast:
        chosen = [e for e in chosen if e.fast]
    targets = args.targets.split(",") if args.targets else available_targets()
    latency = set(targets) if args.latency == "all" else set() if args.latency == "none" else set(args.latency.split(","))
    print(f"zoo: {len(chosen)} models x {len(targets)} targets ({', '.join(targets)}); latency timed for: "
          f"{', '.join(sorted(latency & set(targets))) or 'none'}; evaluation samples: {args.eval_views or 'default'}", flush=True)
    rows: list[Row] = []
    start = time.perf_counter()

    def done(r: Row) -> None:  # each build as it ends: a partial run still leaves its table
        rows.append(r)
        print(f"  {r.model:<20} {r.target:<9} exit {r.exit_code}  {r.build_s:5.0f} s  {r.message[:120]}", flush=True)
        (args.out / "table.md").write_text(format_table(rows) + "\n")

    for e in chosen:
        run_model(e, targets, args.out, latency, args.timeout, args.eval_views, done)
    table = format_table(rows)
    print()
    print(table)
    ok = sum(r.exit_code == 0 for r in rows)
    print(f"\n{ok} of {len(rows)} builds exit 0; {time.perf_counter() - start:.0f} s in all; table in {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
