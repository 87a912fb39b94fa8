# Sourced by bench/serve_http.sh and bench/serve_overload.sh (run from the repository root):
# the settings both share, a free loopback port, and the host line every figure carries.
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
PARALLEL=${PARALLEL:-16}
CTX=${CTX:-1024}
KITE_SERVE=${KITE_SERVE:-build/release/examples/kite-serve}
[[ -f "$MODEL" ]] || { echo "no $MODEL: run python3 tools/fetch_smollm2.py" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

echo "# host: $(python3 "$(dirname "${BASH_SOURCE[0]}")/hostinfo.py"), $(nproc) cores"
