#!/usr/bin/env python3
"""GGUF golden fixtures: ggml block decoding, GGUF metadata of every value type, tiny random GGUF
models with their transformers logits, and SmolLM2-135M-Instruct's tokenizer, chat template and
logits as Hugging Face transformers computes them from the GGUF file.

Writes tests/fixtures/model/gguf/ (about 3.7 MB, 1.5 MB of it the [8][49152] float32 SmolLM2
last-position logits; about 3 minutes on 2 shared cores). Rerunnable; every random draw comes
from a fixed seed, so a rerun with the same package versions (recorded in manifest.json) rewrites
the same bytes (checked: two runs byte-identical), up to the last bits of the torch logits on a
different machine.

Usage: python3 tools/gguf_make_fixtures.py [--models DIR] [--data DIR] [--only PART ...]
  --models  folder holding SmolLM2-135M-Instruct.Q4_1.gguf (default: models/ beside tools/;
            tools/fetch_smollm2.py puts it there)
  --data    data folder holding scifact/corpus.jsonl (default: $KITE_DATA, else ../shared/data
            relative to the repository root)
  --only    blocks meta tiny tokenizer chat smollm2 (default: all; manifest.json keeps the
            entries of the parts not rerun)
Needs: numpy, gguf, torch (CPU), transformers, tokenizers, jinja2. Runs offline (HF_HUB_OFFLINE=1).

Conventions for every file below
--------------------------------
  *.f32   raw little-endian IEEE float32, no header, C order; shapes are given per file.
  *.i32   raw little-endian int32, no header, C order.
  *.bin   raw bytes exactly as they sit in a GGUF tensor (blocks back to back, no header).
  *.json  UTF-8 JSON. 64-bit hashes are 16-digit lower-case hex strings. Floats are the exact
          float32 (or float64 where said) value printed as a shortest-round-trip double.
  Shapes of GGUF tensors are in ggml order: ne[0] is the row length (the contiguous dimension),
  so a transformers weight of shape [out, in] is ggml [in, out].
  "NaN-aware" compare: expected NaN matches any NaN (the payload of a NaN produced by float16 ->
  float32 conversion or by inf*0 is not pinned down); +inf/-inf and every finite value compare
  exactly unless a tolerance is given.

manifest.json
-------------
  {"versions": {"gguf", "transformers", "torch", "numpy", "tokenizers", "jinja2", "python"},
   "seeds": {...}, "blocks": {...}, "meta": {...}, "tiny": {...}, "tokenizer": {...},
   "chat": {...}, "smollm2": {...}, "elapsed_s": {part: seconds}}
  Each part's entry is described with the part below.

a. blocks/  -- ggml block decoding
-----------------------------------
  blocks/<TYPE>.bin  N blocks of type TYPE, back to back (N * bytes_per_block bytes).
  blocks/<TYPE>.f32  the float32 values gguf.quants.dequantize gives for them, in order
                     (N * elements_per_block floats, little-endian raw float32, not .npy).
  manifest["blocks"][TYPE] = {"n_blocks", "block_bytes", "block_elems", "labels": [one short
  description per block], "nonfinite_blocks": {"<index>": "<which field holds NaN/inf>"}}.
  Blocks 0.. are adversarial (labels say what), the rest random. Every block listed in
  nonfinite_blocks has a NaN or +-inf float16 field; its expected values are what the same
  dequantizer gives (NaN-aware compare; inf * 0 = NaN, inf * q = +-inf).
  F16 and BF16 have 1-element "blocks": their files are N = 256 scalars (the specials first:
  +-0, +-1, max, min normal, max/min subnormal, +-inf, NaNs), then random bit patterns.

  Block layouts (ggml's, all little-endian; fp16 = IEEE binary16; checked against
  gguf/quants.py and gguf.constants.GGML_QUANT_SIZES; "q[i]" is element i of the block):
  F16   2 bytes / 1 elem: binary16.
  BF16  2 bytes / 1 elem: the top 16 bits of a float32: value = bits << 16 reinterpreted.
  Q8_0  34 bytes / 32: d fp16 @0, qs int8[32] @2.  y[i] = qs[i] * d.
  Q4_0  18 bytes / 32: d fp16 @0, qs u8[16] @2.
        y[j] = ((qs[j] & 15) - 8) * d, y[j+16] = ((qs[j] >> 4) - 8) * d, j = 0..15.
  Q4_1  20 bytes / 32: d fp16 @0, m fp16 @2, qs u8[16] @4.
        y[j] = (qs[j] & 15) * d + m, y[j+16] = (qs[j] >> 4) * d + m.
  Q4_K  144 bytes / 256: d fp16 @0, dmin fp16 @2, scales u8[12] @4, qs u8[128] @16.
        8 sub-blocks of 32 elements, each with a 6-bit scale sc[s] and 6-bit min m[s] unpacked
        from scales[] (ggml get_scale_min_k4): for s < 4: sc[s] = scales[s] & 63,
        m[s] = scales[s+4] & 63; for s >= 4: sc[s] = (scales[s+4] & 15) | ((scales[s-4] >> 6) << 4),
        m[s] = (scales[s+4] >> 4) | ((scales[s] >> 6) << 4).
        Sub-block s = 2c (c = 0..3) takes the low nibbles of qs[32c .. 32c+31], s = 2c+1 their
        high nibbles: y[32s + l] = (d*sc[s]) * q - (dmin*m[s]), q = that nibble.
  Q5_K  176 bytes / 256: d fp16 @0, dmin fp16 @2, scales u8[12] @4, qh u8[32] @16, qs u8[128] @48.
        As Q4_K, with a fifth bit: q = nibble | (((qh[l] >> s) & 1) << 4), l = 0..31, s = sub-block.
  Q6_K  210 bytes / 256: ql u8[128] @0, qh u8[64] @128, scales int8[16] @192, d fp16 @208.
        Two halves h = 0,1 of 128 elements; within half h, for l = 0..31 (ql_ = ql + 64h,
        qh_ = qh + 32h, y_ = y + 128h):
          y_[l]    from (ql_[l]    & 15) | (((qh_[l] >> 0) & 3) << 4)
          y_[l+32] from (ql_[l+32] & 15) | (((qh_[l] >> 2) & 3) << 4)
          y_[l+64] from (ql_[l]    >> 4) | (((qh_[l] >> 4) & 3) << 4)
          y_[l+96] from (ql_[l+32] >> 4) | (((qh_[l] >> 6) & 3) << 4)
        each value q (0..63) gives y[i] = (d * scales[i / 16]) * (q - 32).
  Arithmetic order (to match bit for bit): fp16 fields are widened to float32 first, and every
  product/sum is one float32 operation in the order written, e.g. (d*sc)*q - (dmin*m) for
  K-quants. A C++ build that contracts a*b+c into an FMA (GCC's default -ffp-contract=fast) can
  differ by 1 ulp there; compare with a 1-ulp (or 1e-6 relative) tolerance or build the test with
  -ffp-contract=off. The generator re-derives every .f32 from these formulas with a scalar
  float32 reference and asserts it equals gguf's output (NaN-aware), so the text above is checked.

b. meta_all_types.gguf / meta_all_types_align32.gguf / meta_all_types.json  -- GGUF metadata
-------------------------------------------------------------------------------------------
  Written with gguf.GGUFWriter (GGUF v3, little-endian). One key of every value type, arrays of
  every scalar type plus strings, nested arrays (array of arrays of INT32, array of arrays of
  STRING; GGUFWriter writes these natively), a UTF-8 string with Korean and emoji (ZWJ sequence),
  a string with an embedded NUL (GGUF strings are length-prefixed, not NUL-terminated),
  general.alignment = 64 (uint32) and three tensors (F32, F16, Q8_0) with known values.
  meta_all_types_align32.gguf has the same keys and tensors but no general.alignment key, so the
  default alignment 32 applies. meta_all_types.json:
    {"kv": [{"key", "type", "value"}],   -- in file order, the same in both files except that
                                             general.alignment is only in the 64 one
     "files": [{"file", "alignment", "has_alignment_key", "version", "kv_count", "tensor_count",
                "data_offset",            -- absolute file offset of the tensor data section
                "file_size",
                "tensors": [{"name", "type", "type_id", "shape", "offset", "n_bytes"}]}],
     "tensor_values": {name: [float32 values in C order, i.e. ne[0] fastest]}}
  "type" is the GGUF value type name: UINT8 INT8 UINT16 INT16 UINT32 INT32 FLOAT32 BOOL STRING
  UINT64 INT64 FLOAT64, or ARRAY[<element type>] recursively, e.g. ARRAY[ARRAY[INT32]].
  "value": JSON number / bool / string / (nested) list; FLOAT32 values are the exact float32.
  The kv list includes GGUFWriter's own general.architecture key but not the header fields.
  Tensor "offset" is relative to data_offset (as stored in the tensor info), a multiple of the
  alignment; "shape" is ggml order; "type" is the ggml type name, "type_id" its enum value.

c. tiny_llama.gguf, tiny_qwen2.gguf, tiny_llama_kquants.gguf  -- tiny random models
----------------------------------------------------------------------------------
  Written the way llama.cpp's convert_hf_to_gguf.py writes them: tensor names token_embd,
  output_norm, output (absent when tied), blk.<i>.{attn_norm, attn_q, attn_k, attn_v,
  attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}.weight (+ attn_{q,k,v}.bias for qwen2);
  keys general.architecture/type/name/file_type/quantization_version and
  <arch>.{block_count, context_length, embedding_length, feed_forward_length,
  attention.head_count, attention.head_count_kv, rope.freq_base,
  attention.layer_norm_rms_epsilon, vocab_size} (+ llama.rope.dimension_count). No tokenizer keys
  (transformers does not need them for the model).
  For llama, attn_q and attn_k rows are permuted as LlamaModel.permute does:
      w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2).reshape(rows, cols)
  with n_head = head_count for Q and head_count_kv for K, so the file holds llama.cpp's
  interleaved-pair RoPE layout (rotate pairs (2i, 2i+1) of each head; ggml rope mode 0), and
  transformers' GGUF loader undoes it (LlamaTensorProcessor._reverse_permute_weights). qwen2 is
  not permuted: llama.cpp applies NEOX RoPE (rotate_half: pairs (i, i + head_dim/2)) to qwen2.
  Which tensor got which ggml type: manifest["tiny"][name]["tensor_types"]. General shape facts
  are in manifest["tiny"][name]["config"] (arch, layers, width, heads, kv heads, head dim, FFN,
  vocab, rope base, rms eps, tied).
  <name>.logits.f32  float32 [24][vocab]: transformers' logits (float32, eager attention) for
  the 24 input ids manifest["tiny"][name]["input_ids"], one row per position, no BOS added.
  manifest["tiny"][name]["crosscheck_max_abs_diff"]: the same logits recomputed from a
  transformers model built directly from the un-permuted dequantized weights (a check of the
  permutation); "max_abs_logit" gives the scale. The weights were rounded through their ggml type
  before both computations, so the logits are exactly those of the weights in the file.

d. smollm2_tokenizer.json, smollm2_scifact_hashes.bin  -- SmolLM2 tokenizer
------------------------------------------------------------------------
  Two tokenizers, both built from the GGUF vocabulary/merges:
    "hf"        transformers AutoTokenizer.from_pretrained(models, gguf_file=...). transformers'
                GGUF converter has no entry for tokenizer.ggml.pre = "smollm" and keeps GPT-2's
                ByteLevel pre-tokenizer (one regex, no digit split).
    "original"  a tokenizers.Tokenizer: BPE(vocab, merges) with pre-tokenizer
                Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
                use_regex=True)], ByteLevel decoder, the 17 CONTROL tokens (ids 0..16) as special
                added tokens: the original SmolLM2 tokenizer.json, and what llama.cpp's "smollm"
                pre-tokenizer does (split every \\p{N} first, then the GPT-2 regex on each piece).
  They differ on whitespace runs followed by a digit ("a  1": hf [81,216,216,33], original
  [81,256,33]); kite should match "original".
  smollm2_tokenizer.json = {"cases": [{"text",
      "ids"                  -- hf, encode(text, add_special_tokens=False): special-token text
                                such as "<|im_start|>" IS matched and becomes its id
      "ids_plain"            -- hf with split_special_tokens=True: special-token text is plain text
      "ids_original"         -- original, special-token text matched (like "ids")
      "ids_original_plain"   -- original with encode_special_tokens=True: special text is plain
                                text (llama.cpp with parse_special = false)
      "decoded"              -- hf decode(ids), skip_special_tokens=False
      "same"                 -- ids == ids_original and ids_plain == ids_original_plain}],
    "decode_checks": [{"ids", "text"}]   -- hf decode of id lists (special tokens, partial UTF-8:
                                            invalid byte sequences become U+FFFD, one per maximal
                                            invalid subpart as Rust's from_utf8_lossy does)
    "token_bytes": [{"id", "token", "hex"}] -- vocabulary strings and the raw bytes they stand for
                                            (GPT-2 byte-to-unicode map reversed)
    "special_ids": {token: id}, "bos_id", "eos_id", "pad_id", "unk_id", "add_bos": false}
  No tokenizer adds BOS/EOS here (tokenizer.ggml.add_bos_token = false).
  smollm2_scifact_hashes.bin -- every document of scifact/corpus.jsonl (5183), "title" and "text"
  tokenized separately (plain-text mode: special-token text not matched; the ids themselves are
  not committed), for each the token count and the 64-bit FNV-1a hash (offset basis
  0xcbf29ce484222325, prime 0x100000001b3, xor-then-multiply per byte) over the ids as
  little-endian int32 bytes (4 bytes per id, in order; an empty list hashes to the offset basis).
  Layout, little-endian, no padding:
    char magic[4] = "KSFH"; u32 version = 1; u32 n_docs; u32 n_hf_differs;
    n_docs records, corpus order, tokenizer "original":
        u32 doc_id (the decimal _id), u32 title_count, u64 title_fnv, u32 text_count, u64 text_fnv
    n_hf_differs records of the same 28-byte layout, tokenizer "hf", only for the documents
        where it differs from "original" (in corpus order)
  File size = 16 + 28 * (n_docs + n_hf_differs). manifest["tokenizer"] repeats the counts and the
  first record.

e. chat_smollm2.json, chat_templates.json  -- chat templates
-----------------------------------------------------------
  chat_smollm2.json = {"template": tokenizer.chat_template of the GGUF, "bos_token", "eos_token",
    "cases": [{"messages": [{"role", "content"}], "add_generation_prompt",
               "rendered"      -- apply_chat_template(tokenize=False)
               "ids"           -- apply_chat_template(tokenize=True): hf tokenizer, special text
                                  matched (so <|im_start|> in the template -> 1, and also inside
                                  user content!)
               "ids_original"  -- the original tokenizer on "rendered", special text matched}]}
  chat_templates.json = [{"family", "source", "template", "bos_token", "eos_token", "messages",
    "add_generation_prompt", "rendered" (string, or null when the template raised),
    "error" (raise_exception's message, or null)}], rendered with transformers' own renderer
  (transformers.utils.chat_template_utils.render_jinja_template: jinja2
  ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True, loopcontrols,
  raise_exception, tojson, strftime_now) given messages, add_generation_prompt, bos_token,
  eos_token. Families: smollm2 (the GGUF's), llama2 (Llama-2-chat), llama3 (Meta-Llama-3-Instruct),
  qwen2 (Qwen2-Instruct, ChatML with a default system prompt); sources in manifest["chat"].

f. smollm2_logits.*, smollm2_greedy.json  -- the real model through transformers (float32)
------------------------------------------------------------------------------------------
  transformers AutoModelForCausalLM.from_pretrained(models, gguf_file=..., dtype=float32), eager
  attention: Q4_1/Q8_0 weights dequantized to float32, Q/K un-permuted, tied output.
  smollm2_logits.json = {"prompts": [{"name", "text", "ids" (64 ids = the first 64 of the
      original tokenizer's encoding of text, special text matched)}], "vocab_subset": [256 ids,
      ascending], "top_k": 20, "files": {...}}
  smollm2_logits_last.f32     float32 [8][49152]: all logits at position 63 of each prompt.
  smollm2_logits_subset.f32   float32 [8][64][256]: logits of vocab_subset[j] at every position.
  smollm2_logits_top20.i32    int32   [8][64][20]: the 20 largest logits' ids per position,
                              descending (ties: lower id first).
  smollm2_logits_top20.f32    float32 [8][64][20]: those logits.
  smollm2_greedy.json = [{"messages", "prompt_ids" (apply_chat_template(add_generation_prompt=
      True, tokenize=True), hf), "generated_ids" (greedy, at most 64, ends with 2 = <|im_end|> if
      generation stopped there), "eos_at" (index of <|im_end|> in generated_ids, or null),
      "top2_gap" (top-1 minus top-2 logit at each generated step), "min_top2_gap", "text"}]
  Steps with a small gap (see min_top2_gap) may legitimately flip under a different summation
  order; a C++ test should compare tokens only up to the first step whose gap is below its
  logit tolerance.
"""
import argparse
import json
import os
import pathlib
import platform
import struct
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import GGUFValueType as VT  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "model" / "gguf"
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SEEDS = {"blocks": 20240601, "meta": 7, "tiny_llama": 1001, "tiny_qwen2": 1002, "tiny_llama_kquants": 1003,
         "tiny_input": 24, "vocab_subset": 256}
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def f32(x):
    """The exact float32 value of x as a Python float (for JSON)."""
    return float(np.float32(x))


def fnv1a64_ids(ids):
    h = FNV_OFFSET
    for b in np.asarray(ids, dtype="<i4").tobytes():
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def write_json(path, obj, indent=None):
    text = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# a. blocks
# ---------------------------------------------------------------------------------------------

F16 = {"zero": 0x0000, "neg_zero": 0x8000, "one": 0x3C00, "neg_1.5": 0xBE00, "max": 0x7BFF, "neg_max": 0xFBFF,
       "min_normal": 0x0400, "max_subnormal": 0x03FF, "min_subnormal": 0x0001, "neg_min_subnormal": 0x8001,
       "inf": 0x7C00, "neg_inf": 0xFC00, "nan": 0x7E00}


def u16(bits):
    return struct.pack("<H", bits)


def rand_f16_bits(rng, lo=-10.0, hi=2.0):
    """A random finite float16 of either sign with |x| log-uniform in [2^lo, 2^hi]."""
    x = np.float16(rng.choice([-1.0, 1.0]) * 2.0 ** rng.uniform(lo, hi))
    return int(x.view(np.uint16))


def f16_bits_of(x):
    return int(np.float16(x).view(np.uint16))


def block_specs(tname, rng):
    """(label, bytes) for every block of type tname: adversarial ones first, then random."""
    rb = lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes()  # noqa: E731
    rf = lambda: rand_f16_bits(rng)  # noqa: E731
    out = []
    scale_cases = [("zero", F16["zero"]), ("neg_zero", F16["neg_zero"]), ("max", F16["max"]),
                   ("neg_max", F16["neg_max"]), ("min_normal", F16["min_normal"]),
                   ("max_subnormal", F16["max_subnormal"]), ("min_subnormal", F16["min_subnormal"]),
                   ("neg_min_subnormal", F16["neg_min_subnormal"]), ("negative", F16["neg_1.5"])]
    nonfinite = [("nan", F16["nan"]), ("inf", F16["inf"]), ("neg_inf", F16["neg_inf"])]
    if tname == "Q8_0":
        mk = lambda d, qs: u16(d) + qs  # noqa: E731
        for lab, d in scale_cases:
            out.append((f"d={lab}, random qs", mk(d, rb(32))))
        out.append(("d=max, qs all -128", mk(F16["max"], bytes([0x80] * 32))))
        out.append(("d=neg_max, qs all 127", mk(F16["neg_max"], bytes([0x7F] * 32))))
        out.append(("d=1, qs all 0", mk(F16["one"], bytes(32))))
        out.append(("d=1, qs -128/127 alternating", mk(F16["one"], bytes([0x80, 0x7F] * 16))))
        for lab, d in nonfinite:
            out.append((f"d={lab}, random qs with zeros", mk(d, bytes(4) + rb(28))))
        while len(out) < 64:
            out.append(("random", mk(rf(), rb(32))))
    elif tname == "Q4_0":
        mk = lambda d, qs: u16(d) + qs  # noqa: E731
        for lab, d in scale_cases:
            out.append((f"d={lab}, random qs", mk(d, rb(16))))
        out.append(("d=max, qs all 0 (-8)", mk(F16["max"], bytes(16))))
        out.append(("d=neg_max, qs all 15", mk(F16["neg_max"], bytes([0xFF] * 16))))
        out.append(("d=1, low nibbles 15, high 0", mk(F16["one"], bytes([0x0F] * 16))))
        out.append(("d=1, low nibbles 0, high 15", mk(F16["one"], bytes([0xF0] * 16))))
        out.append(("d=1, qs 8 (zero)", mk(F16["one"], bytes([0x88] * 16))))
        for lab, d in nonfinite:
            out.append((f"d={lab}, random qs with q=8", mk(d, bytes([0x88] * 2) + rb(14))))
        while len(out) < 64:
            out.append(("random", mk(rf(), rb(16))))
    elif tname == "Q4_1":
        mk = lambda d, m, qs: u16(d) + u16(m) + qs  # noqa: E731
        for lab, d in scale_cases:
            out.append((f"d={lab}, random m, qs", mk(d, rf(), rb(16))))
        for lab, m in scale_cases[2:]:
            out.append((f"m={lab}, random d, qs", mk(rf(), m, rb(16))))
        out.append(("d=max, m=neg_max, qs all 15", mk(F16["max"], F16["neg_max"], bytes([0xFF] * 16))))
        out.append(("d=max, m=max, qs all 15", mk(F16["max"], F16["max"], bytes([0xFF] * 16))))
        out.append(("d=1, m=0, qs all 0", mk(F16["one"], F16["zero"], bytes(16))))
        for lab, d in nonfinite:
            out.append((f"d={lab}, random m, qs with zeros", mk(d, rf(), bytes(2) + rb(14))))
        out.append(("m=inf, random d, qs", mk(rf(), F16["inf"], rb(16))))
        out.append(("m=nan, random d, qs", mk(rf(), F16["nan"], rb(16))))
        while len(out) < 64:
            out.append(("random", mk(rf(), rf(), rb(16))))
    elif tname in ("Q4_K", "Q5_K"):
        nq = 128
        if tname == "Q4_K":
            mk = lambda d, dm, sc, qs, qh=None: u16(d) + u16(dm) + sc + qs  # noqa: E731
        else:
            mk = lambda d, dm, sc, qs, qh=None: u16(d) + u16(dm) + sc + (qh if qh is not None else rb(32)) + qs  # noqa: E731
        for lab, d in scale_cases:
            out.append((f"d={lab}, random dmin, scales, qs", mk(d, rf(), rb(12), rb(nq))))
        for lab, dm in scale_cases[2:]:
            out.append((f"dmin={lab}, random d, scales, qs", mk(rf(), dm, rb(12), rb(nq))))
        out.append(("d=max, dmin=max, all 6-bit scales/mins 63, qs max",
                    mk(F16["max"], F16["max"], bytes([0xFF] * 12), bytes([0xFF] * nq), bytes([0xFF] * 32))))
        out.append(("d=max, dmin=neg_max, scales/mins 63, qs 0",
                    mk(F16["max"], F16["neg_max"], bytes([0xFF] * 12), bytes(nq), bytes(32))))
        out.append(("all scales/mins 0, random qs", mk(rf(), rf(), bytes(12), rb(nq))))
        out.append(("sc[0..3]=63 m[0..3]=0, sc/m[4..7]=0",
                    mk(F16["one"], F16["one"], bytes([0x3F] * 4 + [0x00] * 8), rb(nq))))
        out.append(("sc[0..3]=0 m[0..3]=63 (low bits), sc/m[4..7] from high bits = 63",
                    mk(F16["one"], F16["one"], bytes([0xC0] * 4 + [0xFF] * 4 + [0xFF] * 4), rb(nq))))
        out.append(("sc/m[4..7] high 2 bits only (48)",
                    mk(F16["one"], F16["one"], bytes([0xC0] * 8 + [0x00] * 4), rb(nq))))
        out.append(("sc/m[4..7] low 4 bits only (15)",
                    mk(F16["one"], F16["neg_1.5"], bytes([0x00] * 8 + [0xFF] * 4), rb(nq))))
        for lab, d in nonfinite:
            out.append((f"d={lab}, random rest", mk(d, rf(), rb(12), rb(nq))))
        out.append(("dmin=inf, random rest", mk(rf(), F16["inf"], rb(12), rb(nq))))
        while len(out) < 64:
            out.append(("random", mk(rf(), rf(), rb(12), rb(nq))))
    elif tname == "Q6_K":
        mk = lambda ql, qh, sc, d: ql + qh + sc + u16(d)  # noqa: E731
        for lab, d in scale_cases:
            out.append((f"d={lab}, random rest", mk(rb(128), rb(64), rb(16), d)))
        out.append(("d=max, scales all -128, q all 0 (-32)", mk(bytes(128), bytes(64), bytes([0x80] * 16), F16["max"])))
        out.append(("d=max, scales all 127, q all 63 (31)",
                    mk(bytes([0xFF] * 128), bytes([0xFF] * 64), bytes([0x7F] * 16), F16["max"])))
        out.append(("d=neg_max, scales all -128, q all 63",
                    mk(bytes([0xFF] * 128), bytes([0xFF] * 64), bytes([0x80] * 16), F16["neg_max"])))
        out.append(("scales 0, random q", mk(rb(128), rb(64), bytes(16), F16["one"])))
        out.append(("q = 32 everywhere (zero)", mk(bytes(128), bytes([0xAA] * 64), rb(16), F16["one"])))
        out.append(("scales -128..127 ramp", mk(rb(128), rb(64), bytes([(x * 17) & 0xFF for x in range(16)]), F16["one"])))
        for lab, d in nonfinite:
            out.append((f"d={lab}, random rest with q=32", mk(bytes(128), bytes([0xAA] * 64), rb(16), d)))
        while len(out) < 64:
            out.append(("random", mk(rb(128), rb(64), rb(16), rf())))
    else:
        raise ValueError(tname)
    return out


def scalar_specs(tname, rng):
    """F16 / BF16: 256 scalars, specials first."""
    if tname == "F16":
        specials = [(k, v) for k, v in F16.items()] + [("nan_neg_payload", 0xFE01), ("snan", 0x7C01),
                                                      ("neg_max_subnormal", 0x83FF)]
        rest = [("random finite", rand_f16_bits(rng, -24, 15)) for _ in range(128)]
    else:
        specials = [("zero", 0x0000), ("neg_zero", 0x8000), ("one", 0x3F80), ("neg_1.5", 0xBFC0),
                    ("max", 0x7F7F), ("neg_max", 0xFF7F), ("min_normal", 0x0080), ("max_subnormal", 0x007F),
                    ("min_subnormal", 0x0001), ("neg_min_subnormal", 0x8001), ("inf", 0x7F80),
                    ("neg_inf", 0xFF80), ("nan", 0x7FC0), ("nan_neg_payload", 0xFFC1), ("snan", 0x7F81)]
        rest = [("random finite", int(np.float32(rng.choice([-1, 1]) * 2.0 ** rng.uniform(-130, 127)).view(np.uint32) >> 16))
                for _ in range(128)]
    out = specials + rest
    while len(out) < 256:
        out.append(("random bits", int(rng.integers(0, 1 << 16))))
    return [(lab, u16(v)) for lab, v in out]


def h2f(b, off):
    return np.frombuffer(b, dtype="<f2", count=1, offset=off)[0].astype(np.float32)


def reference_dequant(tname, blk):
    """Scalar float32 implementation of the formulas in the docstring (ggml's reference C)."""
    F = np.float32
    y = np.zeros(GGML_SIZES[tname][0], dtype=np.float32)
    with np.errstate(all="ignore"):
        if tname == "F16":
            y[0] = h2f(blk, 0)
        elif tname == "BF16":
            y[0] = np.frombuffer(struct.pack("<I", struct.unpack("<H", blk)[0] << 16), dtype="<f4")[0]
        elif tname == "Q8_0":
            d = h2f(blk, 0)
            for i in range(32):
                y[i] = F(struct.unpack_from("<b", blk, 2 + i)[0]) * d
        elif tname == "Q4_0":
            d = h2f(blk, 0)
            for j in range(16):
                y[j] = F((blk[2 + j] & 15) - 8) * d
                y[j + 16] = F((blk[2 + j] >> 4) - 8) * d
        elif tname == "Q4_1":
            d, m = h2f(blk, 0), h2f(blk, 2)
            for j in range(16):
                y[j] = F(blk[4 + j] & 15) * d + m
                y[j + 16] = F(blk[4 + j] >> 4) * d + m
        elif tname in ("Q4_K", "Q5_K"):
            d, dmin = h2f(blk, 0), h2f(blk, 2)
            sc_b = blk[4:16]
            qh = blk[16:48] if tname == "Q5_K" else None
            qs = blk[48:176] if tname == "Q5_K" else blk[16:144]
            for s in range(8):
                if s < 4:
                    sc, m = sc_b[s] & 63, sc_b[s + 4] & 63
                else:
                    sc = (sc_b[s + 4] & 15) | ((sc_b[s - 4] >> 6) << 4)
                    m = (sc_b[s + 4] >> 4) | ((sc_b[s] >> 6) << 4)
                d1, m1 = d * F(sc), dmin * F(m)
                c = s // 2
                for l in range(32):
                    q = (qs[32 * c + l] >> (4 * (s % 2))) & 15
                    if qh is not None:
                        q |= ((qh[l] >> s) & 1) << 4
                    y[32 * s + l] = d1 * F(q) - m1
        elif tname == "Q6_K":
            ql, qh = blk[0:128], blk[128:192]
            sc = np.frombuffer(blk, dtype=np.int8, count=16, offset=192)
            d = h2f(blk, 208)
            for h in range(2):
                for l in range(32):
                    a, b, c = ql[64 * h + l], ql[64 * h + 32 + l], qh[32 * h + l]
                    qv = [(a & 15) | (((c >> 0) & 3) << 4), (b & 15) | (((c >> 2) & 3) << 4),
                          (a >> 4) | (((c >> 4) & 3) << 4), (b >> 4) | (((c >> 6) & 3) << 4)]
                    for k in range(4):
                        i = 128 * h + 32 * k + l
                        y[i] = (d * F(sc[i // 16])) * F(qv[k] - 32)
    return y


GGML_SIZES = {"F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
              "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}


def same_nan_aware(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32)))


def part_blocks(man):
    rng = np.random.default_rng(SEEDS["blocks"])
    d = OUT / "blocks"
    d.mkdir(parents=True, exist_ok=True)
    entry = {}
    for tname in ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"):
        qt = QT[tname]
        elems, nbytes = gguf.GGML_QUANT_SIZES[qt]
        assert (elems, nbytes) == GGML_SIZES[tname], tname
        specs = scalar_specs(tname, rng) if tname in ("F16", "BF16") else block_specs(tname, rng)
        raw = b"".join(b for _, b in specs)
        assert all(len(b) == nbytes for _, b in specs)
        arr = np.frombuffer(raw, dtype=np.uint8).reshape(len(specs), nbytes)
        with np.errstate(all="ignore"):
            vals = gguf.quants.dequantize(arr, qt).astype(np.float32).reshape(len(specs), elems)
        ref = np.stack([reference_dequant(tname, b) for _, b in specs])
        assert same_nan_aware(vals, ref), f"{tname}: gguf dequantize differs from the documented formulas"
        (d / f"{tname}.bin").write_bytes(raw)
        vals.astype("<f4").tofile(d / f"{tname}.f32")
        nonfinite = {}
        bad = ~np.isfinite(vals).all(axis=1)
        for i, (lab, _) in enumerate(specs):
            if bad[i] and tname in ("F16", "BF16") and not any(w in lab for w in ("nan", "inf")):
                lab = f"{lab} ({'nan' if np.isnan(vals[i]).any() else 'inf'})"
                specs[i] = (lab, specs[i][1])
            if any(w in lab for w in ("nan", "inf")):
                nonfinite[str(i)] = lab
        assert sorted(map(int, nonfinite)) == np.flatnonzero(bad).tolist(), tname
        entry[tname] = {"n_blocks": len(specs), "block_bytes": nbytes, "block_elems": elems,
                        "labels": [lab for lab, _ in specs], "nonfinite_blocks": nonfinite,
                        "n_nan_values": int(np.isnan(vals).sum()), "n_inf_values": int(np.isinf(vals).sum())}
        print(f"blocks: {tname}: {len(specs)} blocks, {len(raw)} + {vals.size * 4} bytes, "
              f"non-finite blocks {sorted(map(int, nonfinite))}")
    man["blocks"] = entry


# ---------------------------------------------------------------------------------------------
# b. metadata of every type
# ---------------------------------------------------------------------------------------------

def meta_kv():
    """(key, GGUF value type, value, sub_type) in the order written."""
    utf8 = "안녕하세요, 세계! 👋🏽 👨\u200d👩\u200d👧\u200d👦 naïve café — 漢字"
    return [
        ("test.uint8", VT.UINT8, 200, None),
        ("test.int8", VT.INT8, -100, None),
        ("test.uint16", VT.UINT16, 65535, None),
        ("test.int16", VT.INT16, -32768, None),
        ("test.uint32", VT.UINT32, 4294967295, None),
        ("test.int32", VT.INT32, -2147483648, None),
        ("test.float32", VT.FLOAT32, f32(3.14159265358979), None),
        ("test.bool_true", VT.BOOL, True, None),
        ("test.bool_false", VT.BOOL, False, None),
        ("test.string", VT.STRING, "hello gguf", None),
        ("test.string_empty", VT.STRING, "", None),
        ("test.string_utf8", VT.STRING, utf8, None),
        ("test.string_with_nul", VT.STRING, "a\u0000b", None),
        ("test.uint64", VT.UINT64, 18446744073709551615, None),
        ("test.int64", VT.INT64, -9223372036854775808, None),
        ("test.float64", VT.FLOAT64, 2.718281828459045, None),
        ("test.array.uint8", VT.ARRAY, [0, 1, 127, 128, 255], VT.UINT8),
        ("test.array.int8", VT.ARRAY, [-128, -1, 0, 127], VT.INT8),
        ("test.array.uint16", VT.ARRAY, [0, 65535], VT.UINT16),
        ("test.array.int16", VT.ARRAY, [-32768, 32767], VT.INT16),
        ("test.array.uint32", VT.ARRAY, [0, 1, 4294967295], VT.UINT32),
        ("test.array.int32", VT.ARRAY, [-2147483648, -1, 0, 2147483647], VT.INT32),
        ("test.array.float32", VT.ARRAY, [f32(-1.5), 0.0, f32(1e-30), f32(3.4e38)], VT.FLOAT32),
        ("test.array.bool", VT.ARRAY, [True, False, True], VT.BOOL),
        ("test.array.string", VT.ARRAY, ["a", "", "한국어", "🙂"], VT.STRING),
        ("test.array.uint64", VT.ARRAY, [0, 18446744073709551615], VT.UINT64),
        ("test.array.int64", VT.ARRAY, [-9223372036854775808, 9223372036854775807], VT.INT64),
        ("test.array.float64", VT.ARRAY, [-0.1, 1e300, 5e-324], VT.FLOAT64),
        ("test.array.nested_int32", VT.ARRAY, [[1, 2, 3], [-4], [5, 6]], None),
        ("test.array.nested_string", VT.ARRAY, [["x", "yz"], ["한", "🙂", ""]], None),
        ("test.array.single", VT.ARRAY, [42], VT.INT32),
    ]


def meta_tensors():
    f32t = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) * np.float32(0.5)
    f16t = np.array([[0.0, -0.0, 1.0, -2.0, 65504.0, 6.1035156e-05, 5.9604645e-08, 0.333],
                     [1.5, -1.5, 1024.0, -0.001, 100.0, 7.0, 8.0, 9.0]], dtype=np.float16)
    x = (np.arange(128, dtype=np.float32).reshape(2, 64) - 64.0) / np.float32(8.0)
    q8 = gguf.quants.quantize(x, QT.Q8_0)
    q8vals = gguf.quants.dequantize(q8, QT.Q8_0).reshape(2, 64)
    return [("t.f32", f32t, None, f32t), ("t.f16", f16t, None, f16t.astype(np.float32)),
            ("t.q8_0", q8, QT.Q8_0, q8vals)]


def type_name(field, idx=0):
    t = VT(field.types[idx])
    if t != VT.ARRAY:
        return t.name
    return f"ARRAY[{type_name(field, idx + 1)}]"


def parse_gguf(path):
    """A small GGUF v3 reader written from the spec, independent of gguf-py (whose reader flattens
    nested arrays): (header, [(key, type string, value)], [tensor infos], data_offset)."""
    b = pathlib.Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = b[pos:pos + n].decode("utf-8")
        pos += n
        return s

    scalar = {VT.UINT8: "B", VT.INT8: "b", VT.UINT16: "H", VT.INT16: "h", VT.UINT32: "I", VT.INT32: "i",
              VT.FLOAT32: "f", VT.BOOL: "?", VT.UINT64: "Q", VT.INT64: "q", VT.FLOAT64: "d"}

    def value(t):
        if t in scalar:
            return scalar_name(t), take(scalar[t])
        if t == VT.STRING:
            return "STRING", string()
        assert t == VT.ARRAY
        et = VT(take("I"))
        n = take("Q")
        items = [value(et) for _ in range(n)]
        inner = items[0][0] if items else et.name
        return f"ARRAY[{inner}]", [v for _, v in items]

    def scalar_name(t):
        return VT(t).name

    assert b[:4] == b"GGUF"
    pos = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    kvs = []
    for _ in range(n_kv):
        key = string()
        t, v = value(VT(take("I")))
        kvs.append((key, t, v))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("I")
        shape = [take("Q") for _ in range(nd)]
        ttype = take("I")
        off = take("Q")
        infos.append({"name": name, "shape": shape, "type_id": ttype, "offset": off})
    align = next((v for k, _, v in kvs if k == "general.alignment"), 32)
    data_offset = (pos + align - 1) // align * align
    return {"version": version, "tensor_count": n_tensors, "kv_count": n_kv, "alignment": align}, kvs, infos, data_offset


def write_meta_file(path, alignment):
    w = gguf.GGUFWriter(str(path), arch="kite-test")
    w.add_name("kite GGUF metadata coverage")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, vt, val, sub in meta_kv():
        w.add_key_value(key, val, vt, sub_type=sub)
    for name, arr, raw, _ in meta_tensors():
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def part_meta(man):
    d = OUT
    files = []
    kv_json = None
    expected = {k: v for k, _, v, _ in meta_kv()}
    for fname, alignment in (("meta_all_types.gguf", 64), ("meta_all_types_align32.gguf", None)):
        path = d / fname
        write_meta_file(path, alignment)
        header, kvs, infos, data_offset = parse_gguf(path)
        r = gguf.GGUFReader(str(path))  # gguf-py's reader must agree with the spec reader
        assert int(r.data_offset) == data_offset and [t.name for t in r.tensors] == [t["name"] for t in infos]
        assert [k for k in r.fields if not k.startswith("GGUF.")] == [k for k, _, _ in kvs]
        for key, t, v in kvs:
            assert type_name(r.fields[key]) == t, (key, t)
            if key in expected:
                assert v == expected[key], (key, v, expected[key])
        kvs = [{"key": k, "type": t, "value": v} for k, t, v in kvs]
        if alignment == 64:
            kv_json = kvs
        else:
            assert [k for k in kv_json if k["key"] != "general.alignment"] == kvs
        tensors = []
        for info, t in zip(infos, r.tensors):
            assert info["offset"] == int(t.data_offset) - data_offset and info["offset"] % header["alignment"] == 0
            assert info["shape"] == [int(x) for x in t.shape] and info["type_id"] == int(t.tensor_type)
            tensors.append({"name": info["name"], "type": QT(info["type_id"]).name, "type_id": info["type_id"],
                            "shape": info["shape"], "offset": info["offset"], "n_bytes": int(t.n_bytes)})
        files.append({"file": fname, "alignment": header["alignment"], "has_alignment_key": alignment is not None,
                      "version": header["version"], "kv_count": header["kv_count"],
                      "tensor_count": header["tensor_count"], "data_offset": data_offset,
                      "file_size": path.stat().st_size, "tensors": tensors})
        print(f"meta: {fname}: {path.stat().st_size} bytes, {len(kvs)} keys, data at {data_offset}")
    values = {name: [f32(v) for v in vals.reshape(-1)] for name, _, _, vals in meta_tensors()}
    write_json(d / "meta_all_types.json", {"kv": kv_json, "files": files, "tensor_values": values}, indent=1)
    man["meta"] = {"files": [f["file"] for f in files], "n_keys": len(kv_json)}


# ---------------------------------------------------------------------------------------------
# c. tiny random models
# ---------------------------------------------------------------------------------------------

def quantize_k(x, tname):
    """A simple valid K-quant packing of x [rows][cols] (cols % 256 == 0); not llama.cpp's
    optimizing quantizer, only blocks whose dequantization is close to x."""
    rows, cols = x.shape
    xb = x.reshape(-1, 256).astype(np.float32)
    nb = xb.shape[0]
    out = []
    for b in range(nb):
        v = xb[b]
        if tname in ("Q4_K", "Q5_K"):
            qmax = 15 if tname == "Q4_K" else 31
            sub = v.reshape(8, 32)
            mn = np.minimum(sub.min(axis=1), 0.0)
            mx = sub.max(axis=1)
            scale = (mx - mn) / qmax
            d = np.float16(scale.max() / 63)
            dmin = np.float16((-mn).max() / 63)
            sc = np.clip(np.rint(scale / np.float32(d)) if d > 0 else np.zeros(8), 0, 63).astype(np.int64)
            m = np.clip(np.rint(-mn / np.float32(dmin)) if dmin > 0 else np.zeros(8), 0, 63).astype(np.int64)
            step = np.float32(d) * sc.astype(np.float32)
            with np.errstate(all="ignore"):
                q = np.where(step[:, None] > 0, np.rint((sub + (np.float32(dmin) * m)[:, None]) / step[:, None]), 0)
            q = np.clip(q, 0, qmax).astype(np.int64)
            scales = np.zeros(12, dtype=np.int64)
            for j in range(4):
                scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6)
                scales[j + 4] = m[j] | ((m[j + 4] >> 4) << 6)
                scales[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4)
            qs = np.zeros(128, dtype=np.int64)
            for c in range(4):
                qs[32 * c:32 * c + 32] = (q[2 * c] & 15) | ((q[2 * c + 1] & 15) << 4)
            blk = u16(int(d.view(np.uint16))) + u16(int(dmin.view(np.uint16))) + bytes(scales.astype(np.uint8))
            if tname == "Q5_K":
                qh = np.zeros(32, dtype=np.int64)
                for s in range(8):
                    qh |= ((q[s] >> 4) & 1) << s
                blk += bytes(qh.astype(np.uint8))
            blk += bytes(qs.astype(np.uint8))
        else:  # Q6_K
            sub = v.reshape(16, 16)
            amax = np.abs(sub).max(axis=1)
            scale = amax / 31
            d = np.float16(scale.max() / 127)
            sc = np.clip(np.rint(scale / np.float32(d)) if d > 0 else np.zeros(16), -128, 127).astype(np.int64)
            step = np.float32(d) * sc.astype(np.float32)
            with np.errstate(all="ignore"):
                q = np.where(step[:, None] > 0, np.rint(sub / step[:, None]), 0)
            q = (np.clip(q, -32, 31) + 32).astype(np.int64).reshape(256)
            ql = np.zeros(128, dtype=np.int64)
            qh = np.zeros(64, dtype=np.int64)
            for h in range(2):
                base = 128 * h
                for l in range(32):
                    ql[64 * h + l] = (q[base + l] & 15) | ((q[base + 64 + l] & 15) << 4)
                    ql[64 * h + 32 + l] = (q[base + 32 + l] & 15) | ((q[base + 96 + l] & 15) << 4)
                    qh[32 * h + l] = ((q[base + l] >> 4) | ((q[base + 32 + l] >> 4) << 2)
                                      | ((q[base + 64 + l] >> 4) << 4) | ((q[base + 96 + l] >> 4) << 6))
            blk = (bytes(ql.astype(np.uint8)) + bytes(qh.astype(np.uint8)) + bytes(sc.astype(np.int8).view(np.uint8))
                   + u16(int(d.view(np.uint16))))
        out.append(blk)
    bytes_per_row = cols // 256 * gguf.GGML_QUANT_SIZES[QT[tname]][1]
    return np.frombuffer(b"".join(out), dtype=np.uint8).reshape(rows, bytes_per_row).copy()


def to_ggml(x, tname):
    """(array to hand GGUFWriter, raw_dtype, float32 values it stands for) for x [rows][cols]."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if tname == "F32":
        return x, None, x
    if tname == "F16":
        h = x.astype(np.float16)
        return h, None, h.astype(np.float32)
    qt = QT[tname]
    if tname in ("Q4_K", "Q5_K", "Q6_K"):
        q = quantize_k(x, tname)
    else:
        q = gguf.quants.quantize(x, qt)
    vals = gguf.quants.dequantize(q, qt).astype(np.float32).reshape(x.shape)
    if tname in ("Q4_K", "Q5_K", "Q6_K"):
        err = np.abs(vals - x).max() / max(np.abs(x).max(), 1e-30)
        assert err < 0.1, (tname, err)
    return q, qt, vals


def llama_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


TINY = {
    "tiny_llama": dict(arch="llama", layers=2, width=64, heads=4, kv_heads=2, head_dim=16, ffn=160, vocab=320,
                       rope_base=10000.0, eps=1e-5, tied=False, bias=False, ctx=256,
                       types={"token_embd": "F16", "output": "Q8_0",
                              "blk.0.attn_q": "Q4_0", "blk.0.attn_k": "Q4_1", "blk.0.attn_v": "Q8_0",
                              "blk.0.attn_output": "BF16", "blk.0.ffn_gate": "F16", "blk.0.ffn_up": "Q4_1",
                              "blk.0.ffn_down": "Q4_0",
                              "blk.1.attn_q": "F32", "blk.1.attn_k": "BF16", "blk.1.attn_v": "F16",
                              "blk.1.attn_output": "Q8_0", "blk.1.ffn_gate": "Q4_0", "blk.1.ffn_up": "Q8_0",
                              "blk.1.ffn_down": "Q4_1"}),
    "tiny_qwen2": dict(arch="qwen2", layers=2, width=64, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=320,
                       rope_base=1000000.0, eps=1e-6, tied=True, bias=True, ctx=256,
                       types={"token_embd": "Q8_0",
                              "blk.0.attn_q": "F16", "blk.0.attn_k": "Q4_1", "blk.0.attn_v": "Q4_0",
                              "blk.0.attn_output": "Q8_0", "blk.0.ffn_gate": "BF16", "blk.0.ffn_up": "F32",
                              "blk.0.ffn_down": "Q4_1",
                              "blk.1.attn_q": "Q8_0", "blk.1.attn_k": "F16", "blk.1.attn_v": "BF16",
                              "blk.1.attn_output": "Q4_0", "blk.1.ffn_gate": "Q4_1", "blk.1.ffn_up": "Q4_0",
                              "blk.1.ffn_down": "F16"}),
    "tiny_llama_kquants": dict(arch="llama", layers=1, width=256, heads=4, kv_heads=2, head_dim=64, ffn=256,
                               vocab=320, rope_base=10000.0, eps=1e-5, tied=False, bias=False, ctx=256,
                               types={"token_embd": "Q6_K", "output": "Q5_K",
                                      "blk.0.attn_q": "Q4_K", "blk.0.attn_k": "Q5_K", "blk.0.attn_v": "Q6_K",
                                      "blk.0.attn_output": "Q4_K", "blk.0.ffn_gate": "Q5_K",
                                      "blk.0.ffn_up": "Q6_K", "blk.0.ffn_down": "Q4_K"}),
}
FILE_TYPE = {"tiny_llama": gguf.LlamaFileType.MOSTLY_Q4_1, "tiny_qwen2": gguf.LlamaFileType.MOSTLY_Q8_0,
             "tiny_llama_kquants": gguf.LlamaFileType.MOSTLY_Q4_K_M}


def tiny_weights(cfg, seed):
    """HF-layout float32 weights ([out, in]) drawn at O(1)-logit scales."""
    rng = np.random.default_rng(seed)
    W, F, V = cfg["width"], cfg["ffn"], cfg["vocab"]
    q_out, kv_out = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]
    n = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    # a tied embedding doubles as the output matrix: smaller, so the logits stay O(10)
    w = {"token_embd": n(V, W) * np.float32(0.35 if cfg["tied"] else 1.0), "output_norm": 1.0 + 0.2 * n(W)}
    if not cfg["tied"]:
        w["output"] = n(V, W) / np.float32(W ** 0.5)
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        w[p + "attn_norm"] = 1.0 + 0.2 * n(W)
        w[p + "ffn_norm"] = 1.0 + 0.2 * n(W)
        w[p + "attn_q"] = n(q_out, W) * np.float32(2.0 / W ** 0.5)  # larger Q/K give peaky attention
        w[p + "attn_k"] = n(kv_out, W) * np.float32(2.0 / W ** 0.5)
        w[p + "attn_v"] = n(kv_out, W) / np.float32(W ** 0.5)
        w[p + "attn_output"] = n(W, q_out) / np.float32(q_out ** 0.5)
        w[p + "ffn_gate"] = n(F, W) / np.float32(W ** 0.5)
        w[p + "ffn_up"] = n(F, W) / np.float32(W ** 0.5)
        w[p + "ffn_down"] = n(W, F) / np.float32(F ** 0.5)
        if cfg["bias"]:
            w[p + "attn_q.bias"] = 0.2 * n(q_out)
            w[p + "attn_k.bias"] = 0.2 * n(kv_out)
            w[p + "attn_v.bias"] = 0.2 * n(kv_out)
    return w


def hf_model_from(cfg, vals):
    """A transformers model built directly from HF-layout float32 weights (the cross-check)."""
    import torch
    import transformers
    common = dict(vocab_size=cfg["vocab"], hidden_size=cfg["width"], intermediate_size=cfg["ffn"],
                  num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                  num_key_value_heads=cfg["kv_heads"], max_position_embeddings=cfg["ctx"], rms_norm_eps=cfg["eps"],
                  tie_word_embeddings=cfg["tied"], rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_base"]})
    if cfg["arch"] == "llama":
        config = transformers.LlamaConfig(head_dim=cfg["head_dim"], **common)
        cls = transformers.LlamaForCausalLM
    else:
        config = transformers.Qwen2Config(**common)
        cls = transformers.Qwen2ForCausalLM
    config._attn_implementation = "eager"
    model = cls(config).eval()
    names = {"token_embd": "model.embed_tokens.weight", "output_norm": "model.norm.weight", "output": "lm_head.weight"}
    hf = {}
    for k, v in vals.items():
        if k in names:
            hf[names[k]] = v
            continue
        blk, i, t = k.split(".", 2)
        p = f"model.layers.{i}."
        m = {"attn_norm": "input_layernorm.weight", "ffn_norm": "post_attention_layernorm.weight",
             "attn_q": "self_attn.q_proj.weight", "attn_k": "self_attn.k_proj.weight",
             "attn_v": "self_attn.v_proj.weight", "attn_output": "self_attn.o_proj.weight",
             "ffn_gate": "mlp.gate_proj.weight", "ffn_up": "mlp.up_proj.weight", "ffn_down": "mlp.down_proj.weight",
             "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
             "attn_v.bias": "self_attn.v_proj.bias"}[t]
        hf[p + m] = v
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hf.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (cfg["tied"] and m == "lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg["tied"]:
        model.tie_weights()
    return model


def part_tiny(man):
    import torch
    import transformers
    torch.manual_seed(0)
    entry = {}
    input_ids = np.random.default_rng(SEEDS["tiny_input"]).integers(0, 320, 24).tolist()
    input_ids[0], input_ids[5] = 0, 319
    for name, cfg in TINY.items():
        w = tiny_weights(cfg, SEEDS[name])
        arch = cfg["arch"]
        path = OUT / f"{name}.gguf"
        gw = gguf.GGUFWriter(str(path), arch=arch)
        gw.add_type("model")
        gw.add_name(f"kite {name} (random weights)")
        gw.add_block_count(cfg["layers"])
        gw.add_context_length(cfg["ctx"])
        gw.add_embedding_length(cfg["width"])
        gw.add_feed_forward_length(cfg["ffn"])
        gw.add_head_count(cfg["heads"])
        gw.add_head_count_kv(cfg["kv_heads"])
        gw.add_rope_freq_base(cfg["rope_base"])
        gw.add_layer_norm_rms_eps(cfg["eps"])
        gw.add_vocab_size(cfg["vocab"])
        if arch == "llama":
            gw.add_rope_dimension_count(cfg["head_dim"])
        gw.add_file_type(int(FILE_TYPE[name]))
        gw.add_quantization_version(gguf.GGML_QUANT_VERSION)
        vals, types = {}, {}
        order = ["token_embd"] + [k for k in w if k.startswith("blk.")] + ["output_norm"] + (["output"] if not cfg["tied"] else [])
        for k in order:
            x = w[k]
            if x.ndim == 1:
                tname = "F32"
            else:
                tname = cfg["types"][k]
                if arch == "llama" and k.endswith(("attn_q", "attn_k")):
                    kv = cfg["heads"] if k.endswith("attn_q") else cfg["kv_heads"]
                    xp = llama_permute(x, cfg["heads"], kv)
                    arr, raw, v = to_ggml(xp, tname)
                    # the row permutation commutes with row-wise block quantization
                    _, _, v_unperm = to_ggml(x, tname)
                    assert np.array_equal(llama_permute(v_unperm, cfg["heads"], kv), v)
                    gw.add_tensor(k if k.endswith(".bias") else k + ".weight", arr, raw_dtype=raw)
                    vals[k], types[k + ".weight"] = v_unperm, tname
                    continue
            arr, raw, v = to_ggml(x, tname)
            tensor_name = k if k.endswith(".bias") else k + ".weight"
            if tname == "BF16":
                raw = QT.BF16
            gw.add_tensor(tensor_name, arr, raw_dtype=raw)
            vals[k], types[tensor_name] = v, tname
        gw.write_header_to_file()
        gw.write_kv_data_to_file()
        gw.write_tensors_to_file()
        gw.close()

        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(OUT), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            ids = torch.tensor([input_ids])
            logits = model(ids, attention_mask=torch.ones_like(ids)).logits[0].float().numpy()
            ref = hf_model_from(cfg, vals)(ids, attention_mask=torch.ones_like(ids)).logits[0].float().numpy()
        diff = float(np.abs(logits - ref).max())
        assert logits.shape == (24, cfg["vocab"])
        assert diff < 1e-3 * max(1.0, float(np.abs(ref).max())), f"{name}: transformers' GGUF path differs by {diff}"
        logits.astype("<f4").tofile(OUT / f"{name}.logits.f32")
        conf = {k: cfg[k] for k in ("arch", "layers", "width", "heads", "kv_heads", "head_dim", "ffn", "vocab",
                                    "rope_base", "eps", "tied", "bias", "ctx")}
        entry[name] = {"file": path.name, "config": conf, "tensor_types": types, "input_ids": input_ids,
                       "logits_file": f"{name}.logits.f32", "logits_shape": [24, cfg["vocab"]],
                       "crosscheck_max_abs_diff": diff, "max_abs_logit": float(np.abs(logits).max()),
                       "transformers_config": {k: getattr(model.config, k, None) for k in (
                           "model_type", "tie_word_embeddings", "vocab_size", "num_key_value_heads", "head_dim")}}
        print(f"tiny: {name}: {path.stat().st_size} bytes, max |logit| {np.abs(logits).max():.3f}, "
              f"GGUF-path vs direct-weights max diff {diff:.2e}")
    man["tiny"] = entry


# ---------------------------------------------------------------------------------------------
# d. SmolLM2 tokenizer
# ---------------------------------------------------------------------------------------------

def byte_decoder():
    """GPT-2's byte-to-unicode map, reversed: printable bytes stand for themselves, the other 68
    bytes (0..32, 127..160, 173) map to U+0100.. in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def smollm2_reader(models):
    path = pathlib.Path(models) / SMOLLM2
    if not path.is_file():
        sys.exit(f"gguf_make_fixtures: {SMOLLM2} not found in the models folder; run tools/fetch_smollm2.py first")
    return gguf.GGUFReader(str(path))


class Tokenizers:
    """The two SmolLM2 tokenizers: transformers' (from the GGUF) and the original pre-tokenizer."""

    def __init__(self, models):
        from tokenizers import AddedToken, Tokenizer, decoders, models as tmodels, pre_tokenizers
        from transformers import AutoTokenizer
        self.hf = AutoTokenizer.from_pretrained(str(models), gguf_file=SMOLLM2)
        r = smollm2_reader(models)
        self.tokens = r.fields["tokenizer.ggml.tokens"].contents()
        self.types = r.fields["tokenizer.ggml.token_type"].contents()
        merges = r.fields["tokenizer.ggml.merges"].contents()
        bpe = tmodels.BPE(vocab={t: i for i, t in enumerate(self.tokens)},
                          merges=[tuple(m.split(" ")) for m in merges], ignore_merges=False)
        t = Tokenizer(bpe)
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        t.decoder = decoders.ByteLevel()
        self.special = {tok: i for i, (tok, ty) in enumerate(zip(self.tokens, self.types)) if ty == 3}
        t.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in self.special])
        for tok, i in self.special.items():
            assert t.token_to_id(tok) == i
        self.orig = t

    def hf_ids(self, text, plain=False):
        if plain:
            return self.hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return self.hf.encode(text, add_special_tokens=False)

    def orig_ids(self, text, plain=False):
        self.orig.encode_special_tokens = plain
        try:
            return self.orig.encode(text, add_special_tokens=False).ids
        finally:
            self.orig.encode_special_tokens = False

    def batch(self, texts, which):
        tok = self.orig if which == "original" else self.hf.backend_tokenizer
        tok.encode_special_tokens = True
        try:
            return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
        finally:
            tok.encode_special_tokens = False


def long_string(n=2000, seed=2000):
    rng = np.random.default_rng(seed)
    pieces = ["the", "quick", "brown", "fox", "don't", "it's", "2024", "3.14", "1,000,000", "  ", "\t", "\n", "\r\n",
              "안녕하세요", "한국어", "中文", "日本語", "👋🏽", "👨‍👩‍👧", "naïve", "<|im_start|>", "x²", "   7", "\n\n42",
              "def f(x):", "    return", "{", "}", ";", "!!", "...", "e\u0301", "Ġ", "\u00a0", "\u200b"]
    out = ""
    while len(out) < n:
        p = pieces[int(rng.integers(len(pieces)))]
        out += p + ("" if rng.random() < 0.3 else " ")
    return out[:n]


TOKENIZER_CASES = [
    "", "Hello, world!", " leading space", "trailing space ", "  two leading spaces", "multiple   spaces   inside",
    "tab\tseparated\tvalues", "line1\nline2\n\nline4", "windows\r\nline endings\r\n", "\n\n\n", "   ",
    " \t \n mixed whitespace run \n\t ", "0", "1234567890", "3.14159265358979323846",
    "12,345,678.90 and -42 and +7e-10", "123456789012345678901234567890", "a  1", "x   12", "   1", "\n\n2",
    "1  2", "year 2024\t\t2025", "½ cup, x², ①②, ٣٤٥, １２３, Ⅻ",
    "It's, isn't, they're, we've, I'm, you'll, he'd", "IT'S DON'T THEY'RE", "rock 'n' roll 's 't 're",
    "don’t (curly apostrophe)", "안녕하세요, 세계!", "한국어 텍스트와 English mixed", "대한민국 2024년 3월",
    "我爱北京天安门", "中文，标点。", "こんにちは世界、カタカナ", "👋🏽", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag",
    "❤️‍🔥", "🇰🇷🇺🇸", "naïve café résumé", "e\u0301 combining acute", "Ångström",
    "<|im_start|>user\nhi<|im_end|>", "text <|endoftext|> more", "<|im_start|", "< |im_start| >",
    "<repo_name>x<file_sep>y", "<|im_start|><|im_start|>", "ÿþ", "\ufeffBOM at start", "zero\u200bwidth",
    "\U0010ffff max code point", "\ud7ff\ue000 BMP edges", "Ġ ĉ Ċ byte-level alphabet", "nul\x00byte",
    "del\x7f and NEL\x85", "line\u2028separator", "replacement \ufffd char",
    "def f(x):\n    return x**2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    '{"a": [1, 2.5, null], "b": "c"}', "https://example.com/path?q=1&r=2#frag user@example.com",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "!!!???...---", long_string(),
]


def part_tokenizer(man, models, data):
    toks = Tokenizers(models)
    cases = []
    n_diff = 0
    examples = []
    for text in TOKENIZER_CASES:
        c = {"text": text, "ids": toks.hf_ids(text), "ids_plain": toks.hf_ids(text, plain=True),
             "ids_original": toks.orig_ids(text), "ids_original_plain": toks.orig_ids(text, plain=True)}
        c["decoded"] = toks.hf.decode(c["ids"], skip_special_tokens=False)
        c["same"] = c["ids"] == c["ids_original"] and c["ids_plain"] == c["ids_original_plain"]
        assert toks.orig.decode(c["ids_original_plain"], skip_special_tokens=False) == c["decoded"] or "\ufffd" in text
        if not c["same"]:
            n_diff += 1
            if len(text) < 60:
                examples.append({"text": text, "hf": c["ids"], "original": c["ids_original"]})
        cases.append(c)
    hf = toks.hf
    wave = toks.orig_ids("👋")
    an = toks.orig_ids("안")
    decode_ids = [[0], [1], [2], [1, 4093, 198], list(range(17)), wave[:1], wave[:2], wave, an[:1], an[:2],
                  an[:1] + an[:1], [198, 198], [216, 256, 333], [33, 34, 35], [1116, 34]]
    decode_checks = [{"ids": ids, "text": hf.decode(ids, skip_special_tokens=False),
                      "text_skip_special": hf.decode(ids, skip_special_tokens=True)} for ids in decode_ids]
    bd = byte_decoder()
    rng = np.random.default_rng(99)
    tb_ids = sorted(set(list(range(48)) + [198, 216, 256, 333, 1116, 4093, 33085, 49151]
                        + rng.choice(len(toks.tokens), 40, replace=False).tolist()))
    token_bytes = []
    for i in tb_ids:
        tok = toks.tokens[i]
        raw = tok.encode("utf-8") if toks.types[i] == 3 else bytes(bd[ch] for ch in tok)
        token_bytes.append({"id": i, "token": tok, "type": int(toks.types[i]), "hex": raw.hex()})
    special = dict(toks.special)
    write_json(OUT / "smollm2_tokenizer.json", {
        "cases": cases, "decode_checks": decode_checks, "token_bytes": token_bytes, "special_ids": special,
        "bos_id": 1, "eos_id": 2, "pad_id": 2, "unk_id": 0, "add_bos": False}, indent=None)
    print(f"tokenizer: {len(cases)} cases, {n_diff} where transformers' GGUF tokenizer differs from the original")

    # SciFact corpus: counts and FNV-1a hashes, title and text separately
    corpus = pathlib.Path(data) / "scifact" / "corpus.jsonl"
    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows, hf_diff = [], {}
    fields = {}
    for which in ("original", "hf"):
        fields[which] = (toks.batch([d["title"] for d in docs], which), toks.batch([d["text"] for d in docs], which))
    n_tok = 0
    for k, doc in enumerate(docs):
        o = [fields["original"][0][k], fields["original"][1][k]]
        h = [fields["hf"][0][k], fields["hf"][1][k]]
        n_tok += len(o[0]) + len(o[1])
        rows.append([doc["_id"], len(o[0]), fnv1a64_ids(o[0]), len(o[1]), fnv1a64_ids(o[1])])
        if h != o:
            hf_diff[doc["_id"]] = [len(h[0]), fnv1a64_ids(h[0]), len(h[1]), fnv1a64_ids(h[1])]
    rec = struct.Struct("<IIQIQ")
    blob = bytearray(b"KSFH" + struct.pack("<III", 1, len(rows), len(hf_diff)))
    for r in rows:
        blob += rec.pack(int(r[0]), r[1], int(r[2], 16), r[3], int(r[4], 16))
    for doc_id, r in hf_diff.items():
        blob += rec.pack(int(doc_id), r[0], int(r[1], 16), r[2], int(r[3], 16))
    assert len(blob) == 16 + 28 * (len(rows) + len(hf_diff))
    (OUT / "smollm2_scifact_hashes.bin").write_bytes(bytes(blob))
    print(f"tokenizer: scifact {len(rows)} docs, {n_tok} tokens, hf differs on {len(hf_diff)} docs")
    man["tokenizer"] = {"n_cases": len(cases), "n_cases_hf_differs": n_diff, "examples_hf_differs": examples[:12],
                        "scifact_docs": len(rows), "scifact_tokens_original": n_tok,
                        "scifact_docs_hf_differs": len(hf_diff), "scifact_first_record": rows[0],
                        "scifact_hf_differs": hf_diff,
                        "special_text_in_plain_encode": (
                            "transformers encode(add_special_tokens=False) still matches special-token text "
                            "(e.g. '<|im_start|>' -> 1); add_special_tokens only controls BOS/EOS. "
                            "split_special_tokens=True (ids_plain) treats it as plain text.")}


# ---------------------------------------------------------------------------------------------
# e. chat templates
# ---------------------------------------------------------------------------------------------

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."},
     {"role": "assistant", "content": "Why did the chicken cross the road?"}, {"role": "user", "content": "Why?"}],
    [{"role": "user", "content": ""}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "Empty system prompt."}],
    [{"role": "user", "content": "Line one\nLine two\n\n    indented line\n"}],
    [{"role": "system", "content": "당신은 도움이 되는 비서입니다."},
     {"role": "user", "content": "안녕하세요! 오늘 날씨 어때요? 🌤️"}],
    [{"role": "user", "content": "Print <|im_end|> and <|im_start|>assistant literally, then <s>[INST] too."}],
    [{"role": "user", "content": "  leading and trailing spaces  "},
     {"role": "assistant", "content": "  spaced reply  "}, {"role": "user", "content": "ok"}],
    [{"role": "user", "content": "first"}, {"role": "user", "content": "second user turn in a row"}],
]

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    r"{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
FAMILIES = {
    "llama2": (LLAMA2_TEMPLATE, "<s>", "</s>",
               "meta-llama/Llama-2-7b-chat-hf tokenizer_config.json chat_template (JSON-decoded; the '\\n' escapes "
               "are Jinja escapes); verbatim copy in EricLBuehler/mistral.rs mistralrs-core/src/pipeline/mod.rs "
               "(test quoting meta-llama/Llama-2-13b-chat-hf), cf. huggingface/huggingface.js "
               "packages/jinja/test/e2e.test.js"),
    "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>",
               "meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template (JSON-decoded: real newlines "
               "inside the string literals); ggml-org/llama.cpp tests/test-chat-template.cpp case 'Llama-3' has the "
               "same text without the add_generation_prompt guard"),
    "qwen2": (QWEN2_TEMPLATE, None, "<|im_end|>",
              "Qwen/Qwen2-7B-Instruct tokenizer_config.json chat_template (ChatML with default system prompt "
              "'You are a helpful assistant.'; JSON-decoded: real newlines); cf. the Qwen1.5 variant in "
              "huggingface/huggingface.js packages/jinja/test/e2e.test.js"),
}


def render(template, messages, add_generation_prompt, bos, eos):
    from transformers.utils.chat_template_utils import render_jinja_template
    out = render_jinja_template(conversations=[messages], chat_template=template,
                                add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
    rendered = out[0] if isinstance(out, tuple) else out
    return rendered[0] if isinstance(rendered, list) else rendered


def part_chat(man, models):
    import jinja2
    toks = Tokenizers(models)
    hf = toks.hf
    template = hf.chat_template
    cases = []
    for msgs in CONVERSATIONS:
        for agp in (False, True):
            rendered = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=agp)
            ids = hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=agp)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            ids = list(ids)
            assert rendered == render(template, msgs, agp, hf.bos_token, hf.eos_token)
            assert ids == toks.hf_ids(rendered)
            cases.append({"messages": msgs, "add_generation_prompt": agp, "rendered": rendered, "ids": ids,
                          "ids_original": toks.orig_ids(rendered)})
    write_json(OUT / "chat_smollm2.json", {"template": template, "bos_token": hf.bos_token, "eos_token": hf.eos_token,
                                           "cases": cases}, indent=1)
    entries = []
    fams = {"smollm2": (template, hf.bos_token, hf.eos_token, "tokenizer.chat_template of " + SMOLLM2)}
    fams.update(FAMILIES)
    for family, (tmpl, bos, eos, source) in fams.items():
        for msgs in CONVERSATIONS:
            for agp in (False, True):
                try:
                    rendered, error = render(tmpl, msgs, agp, bos, eos), None
                except jinja2.exceptions.TemplateError as e:
                    rendered, error = None, str(e)
                entries.append({"family": family, "source": source, "template": tmpl, "bos_token": bos,
                                "eos_token": eos, "messages": msgs, "add_generation_prompt": agp,
                                "rendered": rendered, "error": error})
    write_json(OUT / "chat_templates.json", entries)
    print(f"chat: {len(cases)} smollm2 cases, {len(entries)} family renderings "
          f"({sum(e['error'] is not None for e in entries)} raised)")
    man["chat"] = {"n_smollm2_cases": len(cases), "n_family_entries": len(entries),
                   "families": {f: v[3] for f, v in fams.items()},
                   "renderer": "transformers.utils.chat_template_utils.render_jinja_template"}


# ---------------------------------------------------------------------------------------------
# f. SmolLM2 logits and greedy decoding
# ---------------------------------------------------------------------------------------------

LOGIT_PROMPTS = [
    ("prose", "The history of the printing press is a story of small improvements adding up to a revolution. "
              "Before Gutenberg, books were copied by hand, a slow and expensive process that kept literacy rare. "
              "Movable metal type, oil-based ink and a screw press changed that within a few decades, and by the "
              "end of the fifteenth century millions of volumes circulated across Europe."),
    ("code", "import numpy as np\n\n\ndef softmax(x, axis=-1):\n    \"\"\"Numerically stable softmax.\"\"\"\n"
             "    z = x - np.max(x, axis=axis, keepdims=True)\n    e = np.exp(z)\n"
             "    return e / np.sum(e, axis=axis, keepdims=True)\n\n\nif __name__ == \"__main__\":\n"
             "    print(softmax(np.array([1.0, 2.0, 3.0])))\n"),
    ("korean", "대한민국의 수도는 서울이며, 인구는 약 천만 명입니다. 서울은 한강을 중심으로 발전해 왔고, "
               "조선 시대부터 정치와 문화의 중심지였습니다. 오늘날에는 세계적인 기술 기업과 대학이 모여 있습니다."),
    ("numbers", "Quarterly revenue (USD): 2019  1,234,567.89; 2020  2,345,678.90; 2021  3,456,789.01; "
                "2022\t4,567,890.12; growth 12.5%, 8.75%, -3.2%. Phone: +1 (555) 010-9999. Pi = 3.14159265358979."),
    ("chat", None),
    ("cjk_emoji", "今天天气很好，我们去公园散步吧！🌳🌞 明天可能会下雨☔，记得带伞。東京の桜は三月末に満開になります🌸。"
                  "家族👨‍👩‍👧‍👦と一緒に花見をしましょう。"),
    ("json", '{"model": "SmolLM2-135M-Instruct", "layers": 30, "hidden": 576, "heads": {"q": 9, "kv": 3}, '
             '"vocab": 49152, "rope_theta": 100000.0, "tied": true, "tags": ["small", "llama", "gguf"], '
             '"quant": {"weights": "Q4_1", "embedding": "Q8_0"}}'),
    ("whitespace", "    indented line\n\n\n\tTabbed   text  with   irregular    spacing.\r\n  1  2   3    4\n"
                   "END   of   block\n\n    another   indented   line   with   7   numbers   8   9   10   11\n"
                   "\t\tdouble tab\t\t42\n\n\n   trailing spaces   \n  - item one\n  - item two\n"),
]
GREEDY_CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about autumn leaves."}],
    [{"role": "user", "content": "Explain photosynthesis in one sentence."}],
    [{"role": "user", "content": "List three prime numbers greater than 10."}],
    [{"role": "user", "content": "What is 12 + 35?"}],
    [{"role": "system", "content": "You are a concise assistant. Answer in one word."},
     {"role": "user", "content": "What color is the sky on a clear day?"}],
    [{"role": "user", "content": "Write a Python function that reverses a string."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me a fun fact about octopuses."}],
    [{"role": "user", "content": "Translate 'good morning' into Korean and Spanish."}],
    [{"role": "user", "content": "안녕하세요! 자기소개를 해 주세요."}],
]


def part_smollm2(man, models):
    import torch
    import transformers
    toks = Tokenizers(models)
    hf = toks.hf
    t0 = time.time()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(models), gguf_file=SMOLLM2, dtype=torch.float32, attn_implementation="eager").eval()
    load_s = time.time() - t0
    prompts = []
    for name, text in LOGIT_PROMPTS:
        if text is None:
            text = hf.apply_chat_template(
                [{"role": "user", "content": "Summarize the plot of Romeo and Juliet in two sentences."},
                 {"role": "assistant", "content": "Two young lovers from feuding families in Verona marry in secret."},
                 {"role": "user", "content": "And how does it end?"}], tokenize=False, add_generation_prompt=True)
        ids = toks.orig_ids(text)
        assert len(ids) >= 64, (name, len(ids))
        prompts.append({"name": name, "text": text, "ids": ids[:64], "hf_ids_equal": toks.hf_ids(text)[:64] == ids[:64]})
    V = model.config.vocab_size
    rng = np.random.default_rng(SEEDS["vocab_subset"])
    subset = sorted({0, 1, 2} | set(rng.choice(np.arange(3, V), 253, replace=False).tolist()))
    assert len(subset) == 256
    with torch.no_grad():
        ids = torch.tensor([p["ids"] for p in prompts])
        logits = model(ids, attention_mask=torch.ones_like(ids)).logits.float().numpy()  # [8][64][V]
    assert logits.shape == (8, 64, V)
    logits[:, -1, :].astype("<f4").tofile(OUT / "smollm2_logits_last.f32")
    logits[:, :, subset].astype("<f4").tofile(OUT / "smollm2_logits_subset.f32")
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :, :20]
    np.ascontiguousarray(order).astype("<i4").tofile(OUT / "smollm2_logits_top20.i32")
    np.take_along_axis(logits, order, axis=-1).astype("<f4").tofile(OUT / "smollm2_logits_top20.f32")
    top2 = np.sort(logits, axis=-1)[:, :, -2:]
    write_json(OUT / "smollm2_logits.json", {
        "prompts": prompts, "vocab_subset": subset, "top_k": 20, "vocab_size": V,
        "files": {"smollm2_logits_last.f32": "float32 [8][49152], position 63",
                  "smollm2_logits_subset.f32": "float32 [8][64][256], logits of vocab_subset",
                  "smollm2_logits_top20.i32": "int32 [8][64][20], ids by descending logit (ties: lower id first)",
                  "smollm2_logits_top20.f32": "float32 [8][64][20], their logits"},
        "max_abs_logit": float(np.abs(logits).max()),
        "min_top2_gap_per_prompt": [float(x) for x in (top2[:, :, 1] - top2[:, :, 0]).min(axis=1)]}, indent=1)
    print(f"smollm2: logits for {len(prompts)} prompts x 64 tokens, max |logit| {np.abs(logits).max():.2f}")

    greedy = []
    gen_cfg = transformers.GenerationConfig(do_sample=False, max_new_tokens=64, eos_token_id=2, pad_token_id=2)
    for msgs in GREEDY_CHATS:
        p = hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
        if hasattr(p, "keys"):
            p = p["input_ids"]
        p = list(p)
        with torch.no_grad():
            x = torch.tensor([p])
            g = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gen_cfg,
                               output_logits=True, return_dict_in_generate=True)
        gen = g.sequences[0, len(p):].tolist()
        steps = torch.stack(g.logits)[:, 0].float()
        t2 = torch.topk(steps, 2, dim=-1).values
        gaps = (t2[:, 0] - t2[:, 1]).tolist()
        assert steps.argmax(-1).tolist() == gen
        greedy.append({"messages": msgs, "prompt_ids": p, "generated_ids": gen,
                       "eos_at": gen.index(2) if 2 in gen else None, "top2_gap": gaps, "min_top2_gap": min(gaps),
                       "text": hf.decode(gen, skip_special_tokens=False)})
    write_json(OUT / "smollm2_greedy.json", greedy, indent=1)
    gaps = sorted((min(g["top2_gap"]), i) for i, g in enumerate(greedy))
    print("smollm2: greedy min top-2 gaps " + ", ".join(f"#{i}: {v:.4f}" for v, i in gaps))
    man["smollm2"] = {"model_file": SMOLLM2, "model_sha256": SMOLLM2_SHA256, "load_s": round(load_s, 1),
                      "n_prompts": len(prompts), "n_greedy": len(greedy),
                      "greedy_eos_at": [g["eos_at"] for g in greedy],
                      "greedy_min_top2_gap": [g["min_top2_gap"] for g in greedy],
                      "logits_min_top2_gap": float((top2[:, :, 1] - top2[:, :, 0]).min()),
                      "transformers_config": {k: getattr(model.config, k, None) for k in (
                          "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "rms_norm_eps",
                          "tie_word_embeddings", "max_position_embeddings")},
                      "rope_parameters": getattr(model.config, "rope_parameters", None)}


# ---------------------------------------------------------------------------------------------
# SmolLM2 GGUF metadata summary (for the C++ loader test)
# ---------------------------------------------------------------------------------------------

def part_smollm2_meta(man, models):
    path = pathlib.Path(models) / SMOLLM2
    r = smollm2_reader(models)
    kv = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        t = type_name(field)
        if t.startswith("ARRAY"):
            vals = field.contents()
            kv.append({"key": key, "type": t, "len": len(vals), "first": vals[:8], "last": vals[-2:]})
        else:
            v = field.contents()
            kv.append({"key": key, "type": t, "value": f32(v) if t == "FLOAT32" else v})
    tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape],
                "offset": int(t.data_offset) - int(r.data_offset), "n_bytes": int(t.n_bytes)} for t in r.tensors]
    write_json(OUT / "smollm2_gguf_meta.json", {
        "file": SMOLLM2, "sha256": SMOLLM2_SHA256, "file_size": path.stat().st_size,
        "version": int(r.fields["GGUF.version"].contents()), "kv_count": int(r.fields["GGUF.kv_count"].contents()),
        "tensor_count": len(tensors), "alignment": 32, "data_offset": int(r.data_offset), "kv": kv,
        "tensors": tensors}, indent=None)
    man["smollm2_meta"] = {"kv_count": len(kv), "tensor_count": len(tensors), "data_offset": int(r.data_offset)}


# ---------------------------------------------------------------------------------------------

def versions():
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for pkg in ("gguf", "transformers", "torch", "numpy", "tokenizers", "jinja2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--data", default=os.environ.get("KITE_DATA") or str(ROOT.parent / "shared" / "data"))
    parts = ["blocks", "meta", "tiny", "tokenizer", "chat", "smollm2"]
    ap.add_argument("--only", nargs="+", choices=parts, default=parts)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)  # this machine's 2 cores are shared: more threads oversubscribe badly
    OUT.mkdir(parents=True, exist_ok=True)
    man_path = OUT / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.is_file() else {}
    man["versions"] = versions()
    man["seeds"] = SEEDS
    man.setdefault("elapsed_s", {})
    t_all = time.time()
    for part in args.only:
        t0 = time.time()
        if part == "blocks":
            part_blocks(man)
        elif part == "meta":
            part_meta(man)
        elif part == "tiny":
            part_tiny(man)
        elif part == "tokenizer":
            part_tokenizer(man, args.models, args.data)
        elif part == "chat":
            part_chat(man, args.models)
        elif part == "smollm2":
            part_smollm2_meta(man, args.models)
            part_smollm2(man, args.models)
        man["elapsed_s"][part] = round(time.time() - t0, 1)
    man["elapsed_s"]["last_run_total"] = round(time.time() - t_all, 1)
    man["files"] = {str(f.relative_to(OUT)): f.stat().st_size for f in sorted(OUT.rglob("*"))
                    if f.is_file() and f.name != "manifest.json"}
    write_json(man_path, man, indent=1)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"gguf_make_fixtures: {OUT.relative_to(ROOT)}: {total} bytes in "
          f"{sum(1 for f in OUT.rglob('*') if f.is_file())} files, {time.time() - t_all:.1f} s")


if __name__ == "__main__":
    main()
