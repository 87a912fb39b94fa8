#!/usr/bin/env python3
"""kite-serve as a process on loopback with SmolLM2-135M-Instruct (stdlib only, every wait bounded).

  kite_serve_test.py protocol --serve BIN --generate BIN --model GGUF
      greedy /v1/chat/completions (with --kv-type f32) equals `kite-generate --chat
      --temperature 0` for the same messages; streaming adds up to the same text; a client that disconnects mid-stream gets
      its request cancelled and its KV blocks back in the pool (read from /metrics); SIGTERM
      drains the request in flight (200), refuses new ones, and the process exits 0.
  kite_serve_test.py openai --serve BIN --model GGUF --embedding-model DIR
      the official `openai` Python client: chat, streaming chat, embeddings (exits 77, skipped,
      when the package is missing, unless KITE_REQUIRE_DATA=1).
  kite_serve_test.py nginx --serve BIN --model GGUF
      two replicas behind nginx (least_conn, buffering off): streaming through the proxy; one
      replica killed mid-test: later requests fail over, none hangs (exits 77 without nginx).
"""
import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

QUESTIONS = [
    ("What is the capital of France?", None),
    ("Name three primary colors.", "You are a concise assistant."),
    ("Write a haiku about the sea.", None),
]


def fail(msg):
    print("FAILED: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg, flush=True)


def skip(msg):
    if os.environ.get("KITE_REQUIRE_DATA", "0") not in ("", "0"):
        fail(msg + " (KITE_REQUIRE_DATA is set)")
    print("SKIPPED: " + msg, flush=True)
    sys.exit(77)


class Server:
    """A kite-serve process on a free port; stderr is collected."""

    def __init__(self, binary, *args):
        self.proc = subprocess.Popen([binary, "--port", "0", "--threads", "2", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                print(line.strip(), flush=True)
                break
        if self.port is None:
            self.proc.kill()
            fail("kite-serve did not start: " + "".join(self.lines))
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, timeout=120):
        c = self.conn(timeout)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def metrics(self):
        status, data = self.request("GET", "/metrics")
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("kite-serve did not exit within %d s of signal %d" % (timeout, sig))


def chat_body(question, system, **kw):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"model": "smollm2", "messages": messages, **kw}


def sse_text(raw):
    text, done = "", False
    for block in raw.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        assert block.startswith("data: "), block
        payload = block[6:]
        if payload == "[DONE]":
            done = True
            continue
        ev = json.loads(payload)
        for ch in ev["choices"]:
            text += ch.get("delta", {}).get("content", "") or ""
    return text, done


def protocol(a):
    # float32 K/V as kite-generate keeps them (the default float16 cache rounds them; the
    # engine tests hold its batch invariance and its distance from float32).
    srv = Server(a.serve, "--model", a.model, "--parallel", "4", "--ctx", "1024", "--kv-type", "f32")
    try:
        # Greedy chat through the server equals kite-generate's greedy chat.
        for q, system in QUESTIONS:
            cmd = [a.generate, "--model", a.model, "--chat", "--prompt", q, "--temperature", "0", "--steps", "48",
                   "--threads", "2", "--json"] + (["--system", system] if system else [])
            want = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout)["text"]
            status, data = srv.request("POST", "/v1/chat/completions", chat_body(q, system, temperature=0, max_tokens=48))
            check(status == 200, "chat %r: HTTP 200" % q)
            got = json.loads(data)["choices"][0]["message"]["content"]
            check(got == want, "chat %r equals kite-generate --chat --temperature 0: %r" % (q, got[:60]))
            # The same request streamed adds up to the same text.
            c = srv.conn()
            c.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(q, system, temperature=0, max_tokens=48, stream=True)),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            text, done = sse_text(r.read().decode())
            c.close()
            check(r.status == 200 and done and text == want, "streamed chat %r adds up and ends with [DONE]" % q)

        # A client that disconnects mid-stream: its request is cancelled, its blocks come back.
        before = srv.metrics()
        c = srv.conn()
        c.request("POST", "/v1/chat/completions",
                  body=json.dumps(chat_body("Tell me a very long story.", None, max_tokens=400, ignore_eos=True, stream=True)),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        first = r.readline()
        check(first.startswith(b"data: "), "the stream started")
        c.sock.shutdown(2)
        c.close()
        deadline, m = time.time() + 20, {}
        while time.time() < deadline:
            m = srv.metrics()
            if (m["kite_requests_cancelled_total"] > before.get("kite_requests_cancelled_total", 0)
                    and m["kite_running_sequences"] == 0 and m["kite_requests_in_flight"] == 0
                    and m["kite_kv_blocks_used"] == m["kite_kv_blocks_cached"]):
                break
            time.sleep(0.05)
        check(m["kite_requests_cancelled_total"] == before.get("kite_requests_cancelled_total", 0) + 1,
              "the disconnect was noticed (kite_requests_cancelled_total)")
        check(m["kite_running_sequences"] == 0, "nothing runs after the disconnect")
        check(m["kite_generation_tokens_total"] - before["kite_generation_tokens_total"] < 400,
              "the request stopped early (%d of 400 tokens)" % (m["kite_generation_tokens_total"] - before["kite_generation_tokens_total"]))
        check(m["kite_kv_blocks_used"] == m["kite_kv_blocks_cached"], "its KV blocks are back in the pool (only the prefix cache holds blocks)")

        # SIGTERM: the request in flight finishes, a new one is refused, the process exits 0.
        result = {}

        def long_request():
            result["r"] = srv.request("POST", "/v1/chat/completions",
                                      chat_body("Count from one to fifty.", None, max_tokens=120, ignore_eos=True))

        t = threading.Thread(target=long_request)
        t.start()
        deadline = time.time() + 20
        while time.time() < deadline and srv.metrics()["kite_running_sequences"] < 1:
            time.sleep(0.02)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            status, _ = srv.request("GET", "/health", timeout=10)
            check(status == 503, "health is 503 while draining")
        except OSError:
            print("ok: the listening socket already closed", flush=True)
        t.join(timeout=60)
        check(not t.is_alive(), "the request in flight finished")
        status, data = result["r"]
        check(status == 200 and json.loads(data)["usage"]["completion_tokens"] == 120, "the request in flight got its 120 tokens")
        code = srv.stop()
        check(code == 0, "kite-serve exited 0 after SIGTERM")
        logs = [json.loads(l) for l in srv.lines if l.startswith("{")]
        check(len(logs) >= 7 and all({"id", "status", "prompt_tokens", "completion_tokens", "ttft_ms", "total_ms"} <= set(x) for x in logs),
              "one structured log line per request (%d lines)" % len(logs))
        check(all("prompt" not in x for x in logs), "no prompt text in the log without --log-prompts")
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


def openai_client(a):
    extra = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".cache", "pylib")
    if os.path.isdir(extra):
        sys.path.insert(0, extra)
    try:
        import openai  # noqa: F401
    except ImportError:
        skip("the openai package is not installed (python3 -m pip install --target .cache/pylib openai)")
    from openai import OpenAI
    srv = Server(a.serve, "--model", a.model, "--embedding-model", a.embedding_model, "--api-key", "test-key", "--alias", "smollm2")
    try:
        client = OpenAI(base_url="http://127.0.0.1:%d/v1" % srv.port, api_key="test-key", timeout=60, max_retries=0)
        models = [m.id for m in client.models.list()]
        check("smollm2" in models, "models.list: %s" % models)
        r = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}],
                                           temperature=0, max_tokens=32)
        text = r.choices[0].message.content
        check("Paris" in text and r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length"),
              "chat.completions.create: %r" % text)
        pieces = []
        for chunk in client.chat.completions.create(model="smollm2", temperature=0, max_tokens=32, stream=True,
                                                    messages=[{"role": "user", "content": "What is the capital of France?"}]):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        check("".join(pieces) == text, "streaming chat adds up to the same text")
        e = client.embeddings.create(model="all-MiniLM-L6-v2", input=["A cat sits on the mat.", "A kitten is on the rug.",
                                                                      "Stock markets fell sharply."])
        vecs = [d.embedding for d in e.data]
        check(len(vecs) == 3 and all(len(v) == 384 for v in vecs), "embeddings.create: 3 vectors of 384")
        check(all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs), "unit length")
        dot = lambda u, v: sum(x * y for x, y in zip(u, v))
        check(dot(vecs[0], vecs[1]) > dot(vecs[0], vecs[2]) + 0.2, "the paraphrase is nearer than the unrelated sentence")
        try:
            OpenAI(base_url="http://127.0.0.1:%d/v1" % srv.port, api_key="wrong", max_retries=0).models.list()
            fail("a wrong key was accepted")
        except openai.AuthenticationError:
            print("ok: a wrong API key is an AuthenticationError (401)", flush=True)
        try:
            client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=0)
            fail("max_tokens 0 was accepted")
        except openai.BadRequestError as x:
            check(x.status_code == 400 and "max_tokens" in str(x), "max_tokens 0 is a BadRequestError naming the field")
        check(srv.stop() == 0, "kite-serve exited 0")
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream kite {{
        least_conn;
        server 127.0.0.1:{p1} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:{p2} max_fails=1 fail_timeout=10s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://kite;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_503;
        }}
    }}
}}
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def nginx(a):
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not exe:
        skip("nginx is not installed (apt-get install nginx-light)")
    r1 = Server(a.serve, "--model", a.model, "--parallel", "4", "--ctx", "1024", "--quiet")
    r2 = Server(a.serve, "--model", a.model, "--parallel", "4", "--ctx", "1024", "--quiet")
    tmp = tempfile.mkdtemp(prefix="kite-nginx-")
    os.chmod(tmp, 0o777)
    port = free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, p1=r1.port, p2=r2.port, port=port))
    ng = subprocess.Popen([exe, "-p", tmp, "-c", os.path.join(tmp, "nginx.conf"), "-g", "daemon off;"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            fail("nginx did not come up: " + open(os.path.join(tmp, "error.log")).read())

        def call(stream, results, i):
            t0 = time.time()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                c.request("POST", "/v1/chat/completions",
                          body=json.dumps(chat_body("Say hello number %d." % i, None, temperature=0, max_tokens=24, stream=stream)),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                body = r.read().decode()
                ok = r.status == 200 and (sse_text(body)[1] if stream else "choices" in json.loads(body))
                results[i] = ("ok" if ok else "HTTP %d" % r.status, time.time() - t0)
            except Exception as x:  # noqa: BLE001 - reported below
                results[i] = (type(x).__name__, time.time() - t0)

        # Streaming through the proxy: events arrive whole and end with [DONE].
        res = {}
        threads = [threading.Thread(target=call, args=(True, res, i)) for i in range(6)]
        [t.start() for t in threads]
        [t.join(90) for t in threads]
        check(all(res.get(i, ("hung",))[0] == "ok" for i in range(6)), "6 streamed requests through nginx: %s" % res)

        # Kill one replica while requests run; every request ends, later ones all succeed.
        res = {}
        threads = []
        for i in range(16):
            if i == 6:
                r1.proc.kill()
            th = threading.Thread(target=call, args=(i % 2 == 0, res, i))
            th.start()
            threads.append(th)
            time.sleep(0.1)
        [t.join(90) for t in threads]
        check(all(i in res for i in range(16)), "no request hung (each ended within 90 s)")
        after = [res[i][0] for i in range(8, 16)]
        check(all(x == "ok" for x in after), "requests after the kill failed over to the other replica: %s" % after)
        failed = [res[i] for i in range(16) if res[i][0] != "ok"]
        print("requests in flight on the killed replica that failed: %d (%s)" % (len(failed), failed), flush=True)
        check(r2.stop() == 0, "the surviving replica drains and exits 0")
    finally:
        ng.terminate()
        try:
            ng.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ng.kill()
        for r in (r1, r2):
            if r.proc.poll() is None:
                r.proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["protocol", "openai", "nginx"])
    p.add_argument("--serve", required=True)
    p.add_argument("--generate")
    p.add_argument("--model", required=True)
    p.add_argument("--embedding-model")
    a = p.parse_args()
    for f in [a.model] + ([a.embedding_model] if a.embedding_model else []):
        if not os.path.exists(f):
            skip("missing: %s (fetch the models with tools/fetch_*.py)" % f)
    {"protocol": protocol, "openai": openai_client, "nginx": nginx}[a.mode](a)
    print("PASSED", flush=True)


if __name__ == "__main__":
    main()
