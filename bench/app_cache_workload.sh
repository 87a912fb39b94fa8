#!/usr/bin/env bash
# The LLM caches' effect on a workload of repeated and paraphrased questions (bench/README.md
# "LLM caches"): kite-rag over the notes corpus with a fresh database, 90 questions: the 30
# questions of examples/data/notes/paraphrases.tsv once each, then, in a seeded shuffle, each of
# them again (half verbatim, half with other spacing) and each one's paraphrase. kite-rag's
# summary gives the share served by each cache and the latency of hits and misses.
#
#   bench/app_cache_workload.sh [BUILD_DIR] [-- extra kite-rag options]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
shift || true
[[ "${1:-}" == "--" ]] && shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/questions.txt" <<'PY'
import random, sys
pairs = [l.rstrip("\n").split("\t") for l in open("examples/data/notes/paraphrases.tsv", encoding="utf-8")
         if l.strip() and not l.startswith("#")]
first = [q for q, _ in pairs]
again = []
for i, (q, p) in enumerate(pairs):
    again.append(q if i % 2 == 0 else "  " + q.replace(" ", "  ") + " ")  # verbatim / other spacing
    again.append(p)
random.Random(7).shuffle(again)
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(first + again) + "\n")
PY
echo "== host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
"$build/examples/kite-rag" --data examples/data/notes --db "$work/cache.sqlite" --queries "$work/questions.txt" \
  --json "$@" > "$work/answers.jsonl" 2> "$work/summary.txt" || { cat "$work/summary.txt"; exit 1; }
grep -v "embedding" "$work/summary.txt"
python3 - "$work/answers.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
second = rows[30:]
for kind in ("miss", "exact", "semantic"):
    r = [x for x in second if x["cache"] == kind]
    if r:
        t = sorted(x["timings_ms"]["total"] for x in r)
        print(f"second pass {kind:8s}: {len(r):2d} of {len(second)} ({100*len(r)/len(second):.0f}%), "
              f"total ms p50 {t[len(t)//2]:.1f}, max {t[-1]:.1f}")
sem = [x for x in second if x["cache"] == "semantic"]
for x in sem:
    print(f"  semantic hit (cosine {x['cache_similarity']:.3f}): {x['question']}")
PY
