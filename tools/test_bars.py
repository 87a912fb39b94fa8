#!/usr/bin/env python3
"""Prints, for every passing CHECK/REQUIRE that compares a measured figure with a bar, the
largest figure measured at that line and the bar, so a bar can be set near the error it guards.

Usage: python3 tools/test_bars.py build/release/tests/model/test_decoder ["[tag]" ...]

Runs the Catch2 program with -s (every assertion reported with its expansion) and reads
expansions of the form `<value> <= <bar>`, `<value> < <bar>`, `<value> >= <bar>` — including
the `max |a - b| = <value> at ...` text of kite::test::difference. Prints one row per source
line: how often it ran, the bars, the extreme value seen (largest for <=, smallest for >=) and
the tightest and median ratio of bar to value (for lower bounds such as cosine >= 0.999, of the
distances to 1). A tightest ratio far above 10 marks a bar that would hide a regression.
"""
import collections
import re
import subprocess
import sys

NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan)"
SITE = re.compile(r"^(?P<file>\S+?):(?P<line>\d+): PASSED:")
EXP = re.compile(rf"^\s*(?:max .*?= )?(?P<val>{NUM})(?: at (?:\(\d+, \d+\)|\[\d+\]) \(a = [^)]*\))?"
                 rf"(?: \(empty\))?\s*(?P<op><=|<|>=|>)\s*(?P<bar>{NUM})\s*$")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = subprocess.run([sys.argv[1], "-s", *sys.argv[2:]], capture_output=True, text=True,
                         errors="replace").stdout.splitlines()
    rows = collections.OrderedDict()  # (site, op) -> [(value, bar)]
    site = None
    for i, line in enumerate(out):
        m = SITE.match(line)
        if m:
            site = f"{m['file'].split('/tests/')[-1]}:{m['line']}"
            continue
        if site and line.strip() == "with expansion:":
            body = []  # a long expansion is split over lines: value, operator, bar
            for nxt in out[i + 1:]:
                if not nxt.strip() or not nxt.startswith(" "):
                    break
                body.append(nxt.strip())
            e = EXP.match(" ".join(body))
            if e:
                rows.setdefault((site, e["op"]), []).append((float(e["val"]), float(e["bar"])))
            site = None
    print(f"{'site':46} {'op':>2} {'runs':>5} {'bar (min..max)':>21} {'extreme':>10} {'tightest':>9} {'median':>9}")
    for (site, op), pairs in rows.items():
        if op in ("<=", "<"):
            ratios = [b / v if v > 0 else float("inf") for v, b in pairs]
            extreme = max(v for v, _ in pairs)
        else:  # a lower bound (cosine >= 0.999): compare the distances to 1
            ratios = [(1 - b) / (1 - v) if v < 1 else float("inf") for v, b in pairs]
            extreme = min(v for v, _ in pairs)
        ratios.sort()
        bars = sorted(b for _, b in pairs)
        brange = f"{bars[0]:.3g}" if bars[0] == bars[-1] else f"{bars[0]:.3g}..{bars[-1]:.3g}"
        print(f"{site:46} {op:>2} {len(pairs):5d} {brange:>21} {extreme:10.3g} {ratios[0]:9.3g} "
              f"{ratios[len(ratios) // 2]:9.3g}")


if __name__ == "__main__":
    main()
