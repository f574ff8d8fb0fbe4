#!/usr/bin/env python3
"""The whole kit's runs compared at each server's best, not at its median. On the 2-core VM
these numbers come from, a run's CPU per response drifts between two levels some 20-30 %
apart (the kernel's share, softirq above all, is what grows: see PERF.md), by chance and run
by run, sometimes within one run (values in between). A median over rounds then says as much
about how often each server drew the slow level as about the server. Noise on this VM only
ever adds CPU time, so a server's quickest runs are the closest reading of its own cost: this
script compares servers at their best run and at their first quartile (the quickest quarter
of their runs), beside the medians.

    ../shared/bench/compare-http.sh ... --raw-tsv /tmp/raw.tsv
    benches/scripts/kit-states.py /tmp/raw.tsv [/tmp/raw2.tsv ...] [--server pinion-pool]

Several files are pooled (the same builds in each, or the comparison means nothing). Per mode:
each server's number of runs, and its requests/s (best, third quartile, median: higher is
better) and CPU microseconds per response (best, first quartile, median: lower is better);
then the chosen server's (default pinion-pool) ratios to each peer at the quartiles. With
fewer than 4 runs a server's quartiles are its best run.
"""
import argparse
import collections
import csv
import statistics
import sys


def quartile(values, q):
    """The q-th quartile (1 or 3) of values, interpolated; the extreme with fewer than 4."""
    v = sorted(values)
    if len(v) < 4:
        return v[0] if q == 1 else v[-1]
    return statistics.quantiles(v, n=4, method="inclusive")[q - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("raw", nargs="+", help="--raw-tsv files of compare-http.sh")
    ap.add_argument("--server", default="pinion-pool", help="whose ratios to print (default pinion-pool)")
    args = ap.parse_args()

    runs = collections.defaultdict(list)  # (mode, server) -> [(rps, cpu)]
    kinds = {}
    for path in args.raw:
        with open(path) as f:
            for r in csv.DictReader(f, delimiter="\t"):
                try:
                    rps, cpu = float(r["rps"]), float(r["srv_cpu_us_per_req"])
                except (KeyError, ValueError):
                    continue
                if rps > 0 and cpu > 0:
                    runs[(r["mode"], r["server"])].append((rps, cpu))
                    kinds[r["server"]] = r.get("kind", "peer")
    if not runs:
        sys.exit(f"no runs with requests/s and CPU in {', '.join(args.raw)}")

    for mode in sorted({m for m, _ in runs}):
        stats = {}
        for (m, s), rs in runs.items():
            if m != mode:
                continue
            rps, cpu = [r for r, _ in rs], [c for _, c in rs]
            stats[s] = {
                "n": len(rs),
                "rps": (max(rps), quartile(rps, 3), statistics.median(rps)),
                "cpu": (min(cpu), quartile(cpu, 1), statistics.median(cpu)),
            }
        print(f"mode {mode}:{'':14} runs   req/s best        Q3    median   CPU us/resp best   Q1  median")
        for s in sorted(stats, key=lambda s: -stats[s]["rps"][1]):
            st = stats[s]
            r, c = st["rps"], st["cpu"]
            print(f"  {s:18} {st['n']:3} {r[0]:12,.0f} {r[1]:9,.0f} {r[2]:9,.0f} {c[0]:16.2f} {c[1]:5.2f} {c[2]:6.2f}")
        me = stats.get(args.server)
        if me is None:
            print(f"  ({args.server} has no runs in mode {mode})\n")
            continue
        peers = sorted((s for s in stats if s != args.server and kinds.get(s) == "peer"), key=lambda s: -stats[s]["rps"][1])
        for p in peers:
            them = stats[p]
            print(
                f"  {args.server} / {p}: req/s {me['rps'][1] / them['rps'][1]:.3f}x at Q3 "
                f"({me['rps'][0] / them['rps'][0]:.3f}x best, {me['rps'][2] / them['rps'][2]:.3f}x median); "
                f"CPU {me['cpu'][1] / them['cpu'][1]:.3f}x at Q1 "
                f"({me['cpu'][0] / them['cpu'][0]:.3f}x best, {me['cpu'][2] / them['cpu'][2]:.3f}x median)"
            )
        print()


if __name__ == "__main__":
    main()
