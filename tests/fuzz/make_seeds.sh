#!/usr/bin/env bash
# Rebuilds the seed corpora tests/fuzz/corpus/<target>/ from kite's committed fixtures
# (tests/fixtures/**, examples/data/notes) plus a few inputs written here (small synthetic
# llama2.c files, OpenAI request bodies, KLUE pairs, chat parts). The output is committed, so
# test_fuzz_regressions replays it; keep it small (< 2 MB). Needs python3 (standard library).
#
#   tests/fuzz/make_seeds.sh [BUILD_DIR]
#
# With BUILD_DIR (a build of the fuzz preset), the BM25 and quantized-weight seeds are also
# rewritten by BUILD_DIR/tests/fuzz/kite_fuzz_write_seeds; without it they are left as they are.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [[ $# -ge 1 ]]; then
    writer="$1/tests/fuzz/kite_fuzz_write_seeds"
    [[ -x "$writer" ]] || { echo "make_seeds.sh: $writer is missing (cmake --build --preset fuzz)" >&2; exit 2; }
    rm -rf "$here/corpus/bm25" "$here/corpus/quant"
    ASAN_OPTIONS=detect_leaks=0 "$writer" "$here/corpus"
fi
python3 - "$root" <<'PY'
import json, os, shutil, struct, sys

root = sys.argv[1]
fx = os.path.join(root, "tests", "fixtures")
out = os.path.join(root, "tests", "fuzz", "corpus")
SEP = b"\n#####\n"  # kite::fuzz::part_separator


def target(name):
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def put(name, file, data):
    with open(os.path.join(out, name, file), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(*p):
    with open(os.path.join(*p), "rb") as f:
        return f.read()


# ---- GGUF: parse enough to cut a file down to its metadata (tensor_count = 0) --------------
def gguf_skip_value(b, o, t):
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if t in fixed:
        return o + fixed[t]
    if t == 8:
        (n,) = struct.unpack_from("<Q", b, o)
        return o + 8 + n
    if t == 9:
        et, n = struct.unpack_from("<IQ", b, o)
        o += 12
        for _ in range(n):
            o = gguf_skip_value(b, o, et)
        return o
    raise ValueError("gguf type %d" % t)


def gguf_metadata_only(b, keep=None, limit_tokens=None):
    """The header and metadata of GGUF bytes `b` with tensor_count 0 (optionally only keys in
    `keep`)."""
    magic, version, n_t, n_kv = struct.unpack_from("<4sIQQ", b, 0)
    o = 24
    kvs = []
    for _ in range(n_kv):
        s = o
        (kl,) = struct.unpack_from("<Q", b, o)
        key = b[o + 8:o + 8 + kl].decode()
        o += 8 + kl
        (t,) = struct.unpack_from("<I", b, o)
        o = gguf_skip_value(b, o + 4, t)
        if keep is None or keep(key):
            kvs.append(b[s:o])
    return struct.pack("<4sIQQ", magic, version, 0, len(kvs)) + b"".join(kvs)


def gguf_str(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def gguf_kv_string(k, v):
    return gguf_str(k) + struct.pack("<I", 8) + gguf_str(v)


def gguf_kv_u32(k, v):
    return gguf_str(k) + struct.pack("<II", 4, v)


def gguf_kv_bool(k, v):
    return gguf_str(k) + struct.pack("<IB", 7, 1 if v else 0)


def gguf_kv_strings(k, vs):
    return gguf_str(k) + struct.pack("<IIQ", 9, 8, len(vs)) + b"".join(gguf_str(v) for v in vs)


def gguf_kv_i32s(k, vs):
    return gguf_str(k) + struct.pack("<IIQ", 9, 5, len(vs)) + b"".join(struct.pack("<i", v) for v in vs)


def gguf_kv_f32s(k, vs):
    return gguf_str(k) + struct.pack("<IIQ", 9, 6, len(vs)) + b"".join(struct.pack("<f", v) for v in vs)


def gguf_file(kvs):
    return struct.pack("<4sIQQ", b"GGUF", 3, 0, len(kvs)) + b"".join(kvs)


G = os.path.join(fx, "model", "gguf")
d = target("gguf")
for f in ["meta_all_types.gguf", "meta_all_types_align32.gguf", "tiny_llama.gguf", "tiny_qwen2.gguf"]:
    shutil.copy(os.path.join(G, f), d)
put("gguf", "tiny_llama_metadata.gguf", gguf_metadata_only(read(G, "tiny_llama.gguf")))

# Tokenizer seeds: the metadata of the tiny models, and small hand-made vocabularies.
target("gguf_tokenizer")  # the tiny models hold no tokenizer: small hand-made vocabularies
B2U = {}
_bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
_n = 0
for _b in range(256):
    if _b in _bs:
        B2U[_b] = chr(_b)
    else:
        B2U[_b] = chr(256 + _n)
        _n += 1
byte_tokens = [B2U[i] for i in range(256)]
merges = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a", "o n", "r e", "Ġ w", "o r"]
merged = [m.replace(" ", "") for m in merges]
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
toks = byte_tokens + merged + specials
types = [1] * (len(byte_tokens) + len(merged)) + [3] * len(specials)
chatml = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
for pre in ["smollm", "gpt-2", "llama-bpe", "qwen2"]:
    kv = [gguf_kv_string("tokenizer.ggml.model", "gpt2"), gguf_kv_string("tokenizer.ggml.pre", pre),
          gguf_kv_strings("tokenizer.ggml.tokens", toks), gguf_kv_i32s("tokenizer.ggml.token_type", types),
          gguf_kv_strings("tokenizer.ggml.merges", merges),
          gguf_kv_u32("tokenizer.ggml.bos_token_id", len(toks) - 3),
          gguf_kv_u32("tokenizer.ggml.eos_token_id", len(toks) - 1),
          gguf_kv_string("tokenizer.chat_template", chatml)]
    put("gguf_tokenizer", "gpt2_%s.gguf" % pre, gguf_file(kv))
spm = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)] + ["\u2581", "\u2581t", "he", "\u2581the", "in", "\u2581a"]
spm_types = [2, 3, 3] + [6] * 256 + [1] * 6
kv = [gguf_kv_string("tokenizer.ggml.model", "llama"), gguf_kv_strings("tokenizer.ggml.tokens", spm),
      gguf_kv_i32s("tokenizer.ggml.token_type", spm_types),
      gguf_kv_f32s("tokenizer.ggml.scores", [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]),
      gguf_kv_u32("tokenizer.ggml.bos_token_id", 1), gguf_kv_u32("tokenizer.ggml.eos_token_id", 2),
      gguf_kv_u32("tokenizer.ggml.unknown_token_id", 0), gguf_kv_bool("tokenizer.ggml.add_space_prefix", True),
      gguf_kv_string("tokenizer.chat_template",
                     "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
                     "message['content'] + ' [/INST]' }}{% endif %}{% endfor %}")]
put("gguf_tokenizer", "llama_spm.gguf", gguf_file(kv))

# ---- vectors -------------------------------------------------------------------------------
R = os.path.join(fx, "retrieval")
target("npy")
for f in ["flat_i4_v2.npy", "flat_queries.npy", "flat_l2_I.npy", "flat_l2_D.npy", "flat_base.npy"]:
    shutil.copy(os.path.join(R, f), os.path.join(out, "npy"))
target("vecs")
shutil.copy(os.path.join(R, "flat_gt.ivecs"), os.path.join(out, "vecs"))
fv = read(R, "flat_base.fvecs")
(dim,) = struct.unpack_from("<i", fv, 0)
put("vecs", "flat_base_head.fvecs", fv[:4 * (1 + dim) * 4])  # the first four vectors
target("faiss")
for f in ["flat_l2.faiss", "flat_ip.faiss", "flat_idmap.faiss"]:
    shutil.copy(os.path.join(R, f), os.path.join(out, "faiss"))

# ---- tokenizer.json ------------------------------------------------------------------------
T = os.path.join(fx, "model", "tokenizers")
target("wordpiece")
shutil.copy(os.path.join(T, "wordpiece_minilm_reduced.json"), os.path.join(out, "wordpiece"))
wp = json.loads(read(T, "wordpiece_minilm_reduced.json"))
vocab = sorted(wp["model"]["vocab"].items(), key=lambda kv: kv[1])
put("wordpiece", "vocab.txt", "\n".join(k for k, _ in vocab[:400]) + "\n")
target("bpe")
for f in ["bpe_gpt2.json", "bpe_llama3.json", "bpe_qwen2.json", "bpe_gpt2_prefix.json"]:
    shutil.copy(os.path.join(T, f), os.path.join(out, "bpe"))

# ---- safetensors and config.json ----------------------------------------------------------
M = os.path.join(fx, "model")
target("safetensors")
shutil.copy(os.path.join(M, "safetensors", "small.safetensors"), os.path.join(out, "safetensors"))
shutil.copy(os.path.join(M, "safetensors", "sharded", "model-00001-of-00004.safetensors"), os.path.join(out, "safetensors"))
shutil.copy(os.path.join(M, "hf", "qwen2", "model.safetensors"), os.path.join(out, "safetensors", "qwen2.safetensors"))
target("config")
for f in sorted(os.listdir(os.path.join(M, "configs"))):
    if f != "expected.json":
        shutil.copy(os.path.join(M, "configs", f), os.path.join(out, "config"))
for m in ["bloom", "gpt2", "llama", "qwen2"]:
    shutil.copy(os.path.join(M, "hf", m, "config.json"), os.path.join(out, "config", "hf_%s.json" % m))
shutil.copy(os.path.join(M, "bert_tiny", "config.json"), os.path.join(out, "config", "bert_tiny.json"))

target("hf_checkpoint")
for m in ["qwen2", "llama"]:
    put("hf_checkpoint", m, SEP.join([read(M, "hf", m, "config.json"), read(M, "hf", m, "model.safetensors")]))
put("hf_checkpoint", "bert_tiny", SEP.join([read(M, "bert_tiny", "config.json"), read(M, "bert_tiny", "model.safetensors")]))

# ---- data sets ------------------------------------------------------------------------------
target("beir")
N = os.path.join(root, "examples", "data", "notes")
put("beir", "notes", SEP.join([read(N, "corpus.jsonl"), read(N, "queries.jsonl"), read(N, "qrels", "test.tsv")]))
E = os.path.join(R, "beir_empty_qrels")
put("beir", "empty_qrels", SEP.join([read(E, "corpus.jsonl"), read(E, "queries.jsonl"), read(E, "qrels", "test.tsv")]))
target("klue")
pairs = [{"guid": "klue-sts-v1_dev_%05d" % i, "source": "airbnb-rtt", "sentence1": s1, "sentence2": s2,
          "labels": {"label": lab, "real-label": lab, "binary-label": 1 if lab >= 3 else 0}}
         for i, (s1, s2, lab) in enumerate([
             ("무엇보다도 호스트분들이 너무 친절하셨습니다.", "무엇보다도, 호스트들은 매우 친절했습니다.", 4.9),
             ("위반행위 조사 등을 거부·방해·기피한 자는 500만원 이하 과태료 부과 대상이다.", "시민들 스스로 자발적인 예방 노력을 한 것은 아산 뿐만이 아니었다.", 0.0),
             ("회사가 보낸 메일은 이 지메일이 아니라 다른 지메일 계정으로 전달해줘.", "사람들이 주로 네이버 메일을 쓰는 이유를 알려줘", 0.2),
             ("Quiet room near the station.", "The room was quiet and close to the station.", 3.6)])]
put("klue", "klue_sts_dev.json", json.dumps(pairs, ensure_ascii=False, indent=1))

# ---- kite-serve request bodies ---------------------------------------------------------------
target("openai")
bodies = {
    "chat.json": {"model": "smollm2", "messages": [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "What is 2+2?"}],
                  "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "n": 2, "seed": 42, "stop": ["\n\n", "END"],
                  "stream": True, "stream_options": {"include_usage": True}},
    "chat_parts.json": {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                                    {"type": "text", "text": " there"}]}],
                        "max_completion_tokens": 8, "presence_penalty": 0, "frequency_penalty": 0, "logprobs": False,
                        "top_k": 40, "ignore_eos": True},
    "completion.json": {"model": "m", "prompt": "Once upon a time", "max_tokens": 5, "echo": False, "stop": "."},
    "completion_ids.json": {"prompt": [[1, 2, 3], [4, 5]], "n": 1, "temperature": 0},
    "embeddings.json": {"model": "minilm", "input": ["first text", "second text"], "encoding_format": "base64"},
    "embeddings_one.json": {"input": "one text", "encoding_format": "float"},
}
for f, b in bodies.items():
    put("openai", f, json.dumps(b))

# ---- text -------------------------------------------------------------------------------------
target("analyzers")
an = json.loads(read(fx, "text", "analyzers.json"))
for i, c in enumerate(an["cases"][:24]):
    put("analyzers", "case%02d.txt" % i, c["text"])
strs = json.loads(read(T, "strings.json"))
for i, s in enumerate(strs[:24]):
    put("analyzers", "string%02d.txt" % i, s)
put("analyzers", "invalid_utf8.txt", b"caf\xc3 \xff\xfe ok \xe4\xbd")

target("chat_template")
ct = json.loads(read(G, "chat_templates.json"))
seen = set()
for c in ct:
    key = c["template"]
    if key in seen:
        continue
    seen.add(key)
    parts = [c["template"].encode()]
    for m in c.get("messages") or []:
        parts.append(("@r:%s:%s" % (m["role"], m["content"])).encode())
    put("chat_template", "%02d_%s" % (len(seen), c.get("family", "t")), SEP.join(parts))
    if len(seen) >= 16:
        break

# ---- llama2.c: a tiny checkpoint and a tokenizer.bin -------------------------------------------
target("llama2c")
dim, hidden, L, heads, kvh, V, S = 8, 16, 1, 2, 2, 16, 4
n = V * dim + L * dim + 4 * L * dim * dim + L * dim + 3 * L * hidden * dim + dim + 2 * S * (dim // heads // 2)
vals = [((i * 7919) % 97) / 97.0 - 0.5 for i in range(n)]
put("llama2c", "tiny_shared.bin", struct.pack("<7i", dim, hidden, L, heads, kvh, V, S) + struct.pack("<%df" % n, *vals))
vals2 = vals + [0.25] * (V * dim)
put("llama2c", "tiny_classifier.bin", struct.pack("<7i", dim, hidden, L, heads, kvh, -V, S) + struct.pack("<%df" % len(vals2), *vals2))

target("llama2c_tokenizer")
pieces = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)] + [(("<0x%02X>" % i).encode(), 0.0) for i in range(256)]
extra = [b" ", b"e", b"t", b"o", b" t", b"he", b" the", b"on", b"ce", b" u", b"up", b"pon", b" a", b"im", b"ti", b"me"]
pieces += [(p, -float(i)) for i, p in enumerate(extra)]
tb = struct.pack("<i", max(len(p) for p, _ in pieces))
for p, s in pieces:
    tb += struct.pack("<fi", s, len(p)) + p
put("llama2c_tokenizer", "tok_small.bin", tb)

total = 0
for dp, _, fs in os.walk(out):
    for f in fs:
        total += os.path.getsize(os.path.join(dp, f))
print("kite fuzz seeds: %d bytes in %s" % (total, os.path.relpath(out, root)))
PY
