#!/usr/bin/env python3
"""Open-loop load generator for OpenAI-compatible chat servers (kite-serve, llama.cpp's llama-server).

    python3 bench/serve_load.py --url http://127.0.0.1:8080 --rate 2 --duration 60 [--seed 1]
        [--model NAME] [--system-prompt-words 120] [--prompt-mean-words 60]
        [--output-mean-tokens 128] [--max-output-tokens 512] [--timeout 120] [--api-key KEY]
        [--json OUT.json] [--label NAME]

Request start times are Poisson arrivals at --rate requests/s over --duration seconds
(exponential gaps from random.Random(seed)); the schedule and every request's prompt and length
are generated up front, so two servers see the identical workload for the same seed. Each
request runs in its own (daemon) thread and is sent at its scheduled time whether or not the
earlier ones have finished (open loop); at most MAX_OPEN requests are open at once, any beyond
that count as errors ("client cap").

Every request is a streaming POST /v1/chat/completions with a shared system prompt (the same
paragraph for all requests, so prefix caching can help), a user message of a lognormal number of
ordinary English words, and max_tokens = n_out with ignore_eos, so a server produces exactly
n_out tokens. Output tokens are counted from the final usage chunk (stream_options.include_usage)
or, without one, as the number of chunks with non-empty content.

Measured per request: TTFT = first chunk with non-empty content - the time the request was sent;
TPOT = (last content chunk - first content chunk) / (tokens - 1); latency = last content chunk -
send time (it leaves out any client-side lag between the scheduled and the actual send).
Percentiles are nearest-rank over the completed requests (sorted values, index ceil(p/100*n)-1).
Throughput = output tokens of the completed requests / (last completion - first send).
HTTP 429 is "rejected"; any other status, an error event, an exception or a timeout is "error".
Everything is bounded: after duration + timeout + 30 s the requests still open are abandoned and
counted as errors ("unfinished").

Standard library only (Python 3.11).
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import sys
import threading
import time
import urllib.parse

# hostinfo.py lies beside this file (on sys.path already when the file runs as a script).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostinfo  # noqa: E402

MAX_OPEN = 512  # requests open at once, at most; more count as errors "client cap"

# A fixed English paragraph; the shared system prompt is its first --system-prompt-words words
# (repeated when more are asked for).
SYSTEM_PARAGRAPH = (
    "You are a careful and friendly assistant for a small public library in a quiet town. "
    "Answer every question in plain English, using short sentences and simple words that a "
    "visitor of any age can follow. When a visitor asks about books, explain what the book is "
    "about, who wrote it, and why a reader might enjoy it, without giving away the ending. "
    "When a visitor asks about the library itself, describe the opening hours, the reading rooms, "
    "the children's corner, and the rules for borrowing and returning books. If you do not know "
    "an answer, say so honestly and suggest asking a member of staff at the front desk. Never "
    "invent facts, dates, or names. Keep a warm and patient tone, thank the visitor for the "
    "question, and offer one helpful next step at the end of each reply, such as a related book, "
    "an event in the community room, or a way to find more information in the catalogue. Be "
    "brief when the question is simple and more detailed when the visitor asks for an explanation."
).split()

# Ordinary English words for the user messages.
WORDS = """
the a an and or but if when while because after before during about above below under over
between through into onto from with without within along across around near far here there
today tomorrow yesterday morning evening night week month year season spring summer autumn
winter weather rain snow wind sun cloud river lake sea ocean mountain hill valley forest tree
flower garden field farm village town city street road bridge house home room kitchen window
door table chair bed book page story letter word sentence question answer idea reason plan
problem solution example history science music art painting song poem game sport team friend
family mother father brother sister child teacher student doctor worker farmer cook driver
writer reader traveler neighbor animal dog cat bird horse fish bread water milk coffee tea
apple orange cheese soup dinner lunch breakfast market shop money price time hour minute moment
way place part side end start middle number group people world country language school office
hospital station train bus car bicycle ship plane journey trip holiday picture photo light
color sound voice noise smell taste feeling memory dream hope fear joy surprise change choice
chance please thank explain describe tell show find make take give keep bring carry read write
listen watch learn teach help walk run swim climb travel visit open close begin finish build
grow cook clean paint sing play work rest sleep wake think know remember forget believe
understand imagine wonder ask say call meet wait stay leave return arrive follow lead carry
good bad new old young big small long short high low warm cold hot cool early late quick slow
easy hard simple clear bright dark quiet loud happy sad kind gentle strong careful curious
important useful different similar common special simple favorite local public simple very
really quite often always never sometimes usually almost already still just only also again
""".split()
WORDS = list(dict.fromkeys(WORDS))  # unique, in order


def lognormal_around(rng: random.Random, mean: float, sigma: float) -> float:
    """A lognormal draw whose mean (not median) is `mean`."""
    mu = math.log(mean) - sigma * sigma / 2.0
    return rng.lognormvariate(mu, sigma)


def system_prompt(words: int) -> str:
    if words <= 0:
        return ""
    out = [SYSTEM_PARAGRAPH[i % len(SYSTEM_PARAGRAPH)] for i in range(words)]
    text = " ".join(out)
    return text if text.endswith(".") else text + "."


def make_schedule(args) -> list[dict]:
    """Poisson arrivals in [0, duration) plus each request's prompt and length, all up front."""
    rng = random.Random(args.seed)
    times = []
    t = 0.0
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.duration:
            break
        times.append(t)
    reqs = []
    for i, at in enumerate(times):
        r = random.Random(f"kite-serve-load:{args.seed}:{i}")  # the request's own RNG
        n_words = max(5, round(lognormal_around(r, args.prompt_mean_words, 0.5)))
        words = [r.choice(WORDS) for _ in range(n_words)]
        words[0] = words[0].capitalize()
        user = " ".join(words) + "?"
        n_out = round(lognormal_around(r, args.output_mean_tokens, 0.5))
        n_out = min(max(n_out, 8), args.max_output_tokens)
        reqs.append({"i": i, "at": at, "user": user, "n_out": n_out})
    return reqs


class Runner:
    def __init__(self, args, reqs: list[dict]):
        self.args = args
        self.reqs = reqs
        u = urllib.parse.urlsplit(args.url)
        if u.scheme not in ("http", ""):
            raise SystemExit(f"serve_load: only http:// URLs are supported, not {args.url!r}")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.base = u.path.rstrip("/")
        self.system = system_prompt(args.system_prompt_words)
        self.lock = threading.Lock()
        self.open = 0
        self.results: list[dict | None] = [None] * len(reqs)

    def body(self, r: dict) -> bytes:
        return json.dumps({
            "model": self.args.model,
            "messages": [{"role": "system", "content": self.system},
                         {"role": "user", "content": r["user"]}],
            "max_tokens": r["n_out"],
            "temperature": 0.8,
            "seed": r["i"],
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
        }).encode()

    def finish(self, i: int, rec: dict) -> None:
        with self.lock:
            self.open -= 1
            if self.results[i] is None:
                self.results[i] = rec

    def one(self, r: dict, t0: float) -> None:
        rec = {"i": r["i"], "scheduled": r["at"], "n_out": r["n_out"], "status": "error", "error": None,
               "sent": None, "first": None, "last": None, "chunks": 0, "tokens": 0, "usage_tokens": None}
        conn = None
        try:
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
            if self.args.api_key:
                headers["Authorization"] = f"Bearer {self.args.api_key}"
            body = self.body(r)
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)
            rec["sent"] = time.perf_counter() - t0
            conn.request("POST", self.base + "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            if resp.status == 429:
                resp.read()
                rec["status"] = "rejected"
                rec["error"] = "HTTP 429"
                return
            if resp.status != 200:
                text = resp.read(500).decode("utf-8", "replace").strip().replace("\n", " ")
                rec["error"] = f"HTTP {resp.status}: {text[:200]}"
                return
            done = False
            while True:
                line = resp.readline()
                if not line:
                    break
                line = line.strip()
                if not line or line.startswith(b":"):
                    continue
                if not line.startswith(b"data:"):
                    continue  # event:, id:, retry: fields
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                now = time.perf_counter() - t0
                obj = json.loads(data)
                if "error" in obj and not obj.get("choices"):
                    err = obj["error"]
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    raise RuntimeError(f"error event: {str(msg)[:200]}")
                for ch in obj.get("choices") or []:
                    content = (ch.get("delta") or {}).get("content")
                    if content:
                        if rec["first"] is None:
                            rec["first"] = now
                        rec["last"] = now
                        rec["chunks"] += 1
                usage = obj.get("usage")
                if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                    rec["usage_tokens"] = int(usage["completion_tokens"])
            if not done:
                rec["error"] = "stream ended without data: [DONE]"
                return
            if rec["first"] is None:
                rec["error"] = "no content in the stream"
                return
            rec["tokens"] = rec["usage_tokens"] if rec["usage_tokens"] is not None else rec["chunks"]
            rec["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - every failure of one request is recorded as its error
            rec["status"] = "error"
            rec["error"] = f"{type(e).__name__}: {e}"[:300]
        finally:
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
            self.finish(r["i"], rec)

    def run(self) -> tuple[list[dict], float]:
        args = self.args
        t0 = time.perf_counter()
        deadline = args.duration + args.timeout + 30.0
        threads: list[threading.Thread] = []
        for r in self.reqs:
            delay = r["at"] - (time.perf_counter() - t0)
            if delay > 0:
                time.sleep(delay)
            with self.lock:
                capped = self.open >= MAX_OPEN
                if not capped:
                    self.open += 1
            if capped:
                now = time.perf_counter() - t0
                self.results[r["i"]] = {"i": r["i"], "scheduled": r["at"], "n_out": r["n_out"], "status": "error",
                                        "error": "client cap", "sent": None, "first": None, "last": None,
                                        "chunks": 0, "tokens": 0, "usage_tokens": None, "capped_at": now}
                continue
            th = threading.Thread(target=self.one, args=(r, t0), daemon=True, name=f"req-{r['i']}")
            th.start()
            threads.append(th)
        for th in threads:
            left = deadline - (time.perf_counter() - t0)
            if left <= 0:
                break
            th.join(left)
        with self.lock:  # a snapshot: threads still open now are abandoned
            out = []
            for r, rec in zip(self.reqs, self.results):
                if rec is None:
                    rec = {"i": r["i"], "scheduled": r["at"], "n_out": r["n_out"], "status": "error",
                           "error": "unfinished", "sent": None, "first": None, "last": None,
                           "chunks": 0, "tokens": 0, "usage_tokens": None}
                out.append(dict(rec))
        return out, time.perf_counter() - t0


def percentile(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def summarize(args, recs: list[dict], wall: float) -> dict:
    ok = [r for r in recs if r["status"] == "ok"]
    rejected = [r for r in recs if r["status"] == "rejected"]
    errors = [r for r in recs if r["status"] == "error"]
    sends = sorted(r["sent"] for r in recs if r["sent"] is not None)
    ttft = sorted((r["first"] - r["sent"]) * 1000.0 for r in ok)
    tpot = sorted((r["last"] - r["first"]) * 1000.0 / (r["tokens"] - 1) for r in ok if r["tokens"] > 1)
    lat = [(r["last"] - r["sent"]) * 1000.0 for r in ok]
    lag = [(r["sent"] - r["scheduled"]) * 1000.0 for r in recs if r["sent"] is not None]
    tokens = sum(r["tokens"] for r in ok)
    span = (max(r["last"] for r in ok) - sends[0]) if ok else 0.0
    kinds: dict[str, int] = {}
    messages: list[str] = []
    for r in errors:
        msg = r["error"] or "error"
        if msg in ("client cap", "unfinished"):
            kind = msg
        elif "timed out" in msg.lower() or msg.startswith("TimeoutError"):
            kind = "timeout"
        else:
            kind = msg.split(":")[0]  # "HTTP 500", "ConnectionResetError", "error event", ...
        kinds[kind] = kinds.get(kind, 0) + 1
        if msg not in messages and len(messages) < 5:
            messages.append(msg)

    def r3(x):
        return None if x is None else round(x, 3)

    return {
        "label": args.label,
        "url": args.url,
        "model": args.model,
        "seed": args.seed,
        "rate": args.rate,
        "duration_s": args.duration,
        "scheduled": len(recs),
        "sent": len(sends),
        "completed": len(ok),
        "rejected": len(rejected),
        "errors": len(errors),
        "error_kinds": kinds,
        "error_messages": messages,
        "output_tokens": tokens,
        "output_tokens_expected": sum(r["n_out"] for r in ok),
        "token_count_source": ("usage" if ok and all(r["usage_tokens"] is not None for r in ok)
                               else "content chunks" if ok and all(r["usage_tokens"] is None for r in ok)
                               else "mixed" if ok else None),
        "throughput_tok_s": r3(tokens / span) if span > 0 else None,
        "ttft_ms": {"p50": r3(percentile(ttft, 50)), "p95": r3(percentile(ttft, 95)), "p99": r3(percentile(ttft, 99))},
        "tpot_ms": {"p50": r3(percentile(tpot, 50)), "p95": r3(percentile(tpot, 95)), "p99": r3(percentile(tpot, 99))},
        "mean_latency_ms": r3(sum(lat) / len(lat)) if lat else None,
        "mean_send_lag_ms": r3(sum(lag) / len(lag)) if lag else None,
        "achieved_rate": r3((len(sends) - 1) / (sends[-1] - sends[0])) if len(sends) > 1 and sends[-1] > sends[0] else None,
        "wall_s": r3(wall),
        "percentiles": "nearest-rank over completed requests",
        "latency": "last content chunk - actual send (client scheduling lag excluded)",
        "throughput": "completed output tokens / (last completion - first send)",
        "achieved_rate_def": "(sent - 1) / (last send - first send)",
        "requests": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in recs],
    }


def fmt(x, unit="") -> str:
    return "-" if x is None else f"{x:.1f}{unit}"


def report(s: dict) -> str:
    t, p = s["ttft_ms"], s["tpot_ms"]
    lines = [
        f"== {s['label'] or s['url']}: rate {s['rate']}/s for {s['duration_s']} s, seed {s['seed']}",
        f"requests    sent {s['sent']} of {s['scheduled']} scheduled (achieved rate {fmt(s['achieved_rate'])}/s, "
        f"mean send lag {fmt(s['mean_send_lag_ms'])} ms)",
        f"outcome     completed {s['completed']}, rejected (429) {s['rejected']}, errors {s['errors']}"
        + (f" {s['error_kinds']}" if s["errors"] else ""),
        f"tokens      {s['output_tokens']} output tokens (expected {s['output_tokens_expected']}; "
        f"counted from {s['token_count_source']})",
        f"throughput  {fmt(s['throughput_tok_s'])} tok/s",
        f"TTFT ms     p50 {fmt(t['p50'])}  p95 {fmt(t['p95'])}  p99 {fmt(t['p99'])}",
        f"TPOT ms     p50 {fmt(p['p50'])}  p95 {fmt(p['p95'])}  p99 {fmt(p['p99'])}",
        f"latency     mean {fmt(s['mean_latency_ms'])} ms (send to last token)",
        f"(percentiles: {s['percentiles']}; wall {s['wall_s']:.1f} s)",
    ]
    for m in s["error_messages"]:
        lines.append(f"error       {m}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Open-loop Poisson load for an OpenAI-compatible chat server.")
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--rate", type=float, required=True, help="mean arrivals per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds of arrivals")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default="default", help="the request's model field")
    ap.add_argument("--system-prompt-words", type=int, default=120)
    ap.add_argument("--prompt-mean-words", type=float, default=60)
    ap.add_argument("--output-mean-tokens", type=float, default=128)
    ap.add_argument("--max-output-tokens", type=int, default=512)
    ap.add_argument("--timeout", type=float, default=120, help="socket timeout per request, seconds")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--json", default=None, help="write the summary (and per-request records) here")
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.timeout <= 0:
        ap.error("--rate, --duration and --timeout must be positive")
    if args.prompt_mean_words <= 0 or args.output_mean_tokens <= 0 or args.max_output_tokens < 8:
        ap.error("--prompt-mean-words and --output-mean-tokens must be positive, --max-output-tokens at least 8")

    reqs = make_schedule(args)
    recs, wall = Runner(args, reqs).run()
    s = summarize(args, recs, wall)
    print(f"host: {hostinfo.describe()}")
    print(report(s), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
