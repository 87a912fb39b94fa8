#!/usr/bin/env python3
"""Regenerates the loader fixtures of tests/model (safetensors files and config.json files).

  tests/fixtures/model/safetensors/small.safetensors   written by the `safetensors` library
      (torch writer): F32, F16, BF16 tensors of several ranks, a scalar, an empty tensor and an
      I64 tensor, with "__metadata__"
  tests/fixtures/model/safetensors/small.json          every tensor's dtype, shape and values as
      float (exact: float32 values printed with repr, F16/BF16 upcast by torch)
  tests/fixtures/model/safetensors/sharded/            the same kind of model split in two shards
      by transformers' own sharding (model.safetensors.index.json + two files)
  tests/fixtures/model/configs/*.json                  config.json files written by transformers'
      config classes (LlamaConfig, Qwen2Config, BloomConfig, GPT2Config, BertConfig), plus two
      older-style Llama configs (rope_theta + rope_scaling keys, as transformers 4 wrote them)
  tests/fixtures/model/configs/expected.json           what kite must read from each
  tests/fixtures/model/xorshift.json                   the first outputs of llama2.c's random_u32
      (xorshift*) for a few seeds, computed here with Python integers

Usage: python3 tools/model_make_fixtures.py   (needs torch, safetensors, transformers)
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "model"


def lcg_tensor(shape, seed, scale=1.0):
    """Deterministic values without depending on torch's RNG across versions."""
    n = 1
    for d in shape:
        n *= d
    s = seed
    vals = []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        vals.append(((s >> 40) / 8388608.0 - 1.0) * scale)
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)


def safetensors_fixtures():
    d = OUT / "safetensors"
    d.mkdir(parents=True, exist_ok=True)
    tensors = {
        "embed.weight": lcg_tensor((7, 5), 1),
        "layer.0.wq": lcg_tensor((4, 5), 2, 3.0).to(torch.float16),
        "layer.0.bias": lcg_tensor((4,), 3, 100.0).to(torch.bfloat16),
        "layer.0.cube": lcg_tensor((2, 3, 4), 4).to(torch.bfloat16),
        "fp16.specials": torch.tensor([0.0, -0.0, 65504.0, 6.0e-8, -1.5, float("inf")], dtype=torch.float16),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        "position_ids": torch.arange(6, dtype=torch.int64).reshape(1, 6),
    }
    save_file(tensors, str(d / "small.safetensors"), metadata={"format": "pt", "note": "kite fixture"})
    expected = {}
    for name, t in tensors.items():
        entry = {"dtype": {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                           torch.int64: "I64"}[t.dtype],
                 "shape": list(t.shape)}
        if t.is_floating_point():
            entry["values"] = [repr(float(v)) for v in t.float().flatten().tolist()]
        expected[name] = entry
    (d / "small.json").write_text(json.dumps({"metadata": {"format": "pt", "note": "kite fixture"},
                                              "tensors": expected}, indent=1) + "\n")

    # Sharded: let transformers split a tiny model the way it splits real checkpoints.
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    sd = d / "sharded"
    for f in sd.glob("*"):
        f.unlink()
    model.save_pretrained(str(sd), max_shard_size="2KB", safe_serialization=True)
    for extra in ("config.json", "generation_config.json"):
        (sd / extra).unlink(missing_ok=True)
    expected_sharded = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        expected_sharded[name] = {"shape": list(t.shape), "sum": float(t.double().sum())}
    (sd / "expected.json").write_text(json.dumps(expected_sharded, indent=1, sort_keys=True) + "\n")


def config_fixtures():
    from transformers import BertConfig, BloomConfig, GPT2Config, LlamaConfig, Qwen2Config
    d = OUT / "configs"
    d.mkdir(parents=True, exist_ok=True)
    configs = {
        "llama_gqa": LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688,
                                 num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
                                 max_position_embeddings=512, rope_theta=500000.0, rms_norm_eps=1e-5,
                                 tie_word_embeddings=True),
        "llama_linear": LlamaConfig(vocab_size=1000, hidden_size=128, intermediate_size=256,
                                    num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256,
                                    rope_scaling={"rope_type": "linear", "factor": 4.0}),
        "llama_partial_dynamic": LlamaConfig(vocab_size=100, hidden_size=128, intermediate_size=256,
                                             num_hidden_layers=2, num_attention_heads=2,
                                             max_position_embeddings=128, partial_rotary_factor=0.5,
                                             rope_scaling={"type": "dynamic", "factor": 2.0}),
        "qwen2": Qwen2Config(vocab_size=1500, hidden_size=128, intermediate_size=320, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                             rope_theta=1000000.0, tie_word_embeddings=True),
        "bloom": BloomConfig(vocab_size=300, hidden_size=64, n_layer=2, n_head=4, layer_norm_epsilon=1e-5),
        "gpt2": GPT2Config(vocab_size=500, n_embd=64, n_layer=2, n_head=4, n_positions=128),
        "bert": BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                           intermediate_size=1536, max_position_embeddings=512),
    }
    for name, c in configs.items():
        (d / f"{name}.json").write_text(c.to_json_string(use_diff=False))
    # transformers 4 spellings, as found in checkpoints on the Hub.
    (d / "llama_v4_dynamic.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "rope_scaling": {"type": "dynamic", "factor": 2.0}, "partial_rotary_factor": 0.25,
        "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": [2, 32000]},
        indent=2))
    (d / "bloom_v4.json").write_text(json.dumps({
        "model_type": "bloom", "vocab_size": 250880, "n_embed": 1024, "n_layer": 24, "num_attention_heads": 16,
        "layer_norm_epsilon": 1e-05, "apply_residual_connection_post_layernorm": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}, indent=2))

    def rope_cfg(c):
        rp = getattr(c, "rope_parameters", None) or {}
        return rp

    expected = {}
    for name, c in configs.items():
        e = {"model_type": c.model_type}
        if c.model_type in ("llama", "qwen2"):
            hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            rp = rope_cfg(c)
            e.update(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                     num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
                     num_kv_heads=c.num_key_value_heads, head_dim=hd,
                     max_position_embeddings=c.max_position_embeddings, norm_eps=c.rms_norm_eps,
                     rope_theta=rp["rope_theta"], rope_type=rp.get("rope_type", "default"),
                     rope_factor=rp.get("factor", 1.0),
                     rotary_dim=int(hd * rp.get("partial_rotary_factor", 1.0)),
                     tie_word_embeddings=c.tie_word_embeddings, hidden_act=c.hidden_act)
        elif c.model_type == "bloom":
            e.update(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_layers=c.n_layer,
                     num_heads=c.n_head, num_kv_heads=c.n_head, head_dim=c.hidden_size // c.n_head,
                     intermediate_size=4 * c.hidden_size, norm_eps=c.layer_norm_epsilon,
                     tie_word_embeddings=c.tie_word_embeddings)
        elif c.model_type == "gpt2":
            e.update(vocab_size=c.vocab_size, hidden_size=c.n_embd, num_layers=c.n_layer, num_heads=c.n_head,
                     num_kv_heads=c.n_head, head_dim=c.n_embd // c.n_head, max_position_embeddings=c.n_positions,
                     intermediate_size=c.n_inner or 4 * c.n_embd, norm_eps=c.layer_norm_epsilon,
                     hidden_act=c.activation_function, tie_word_embeddings=c.tie_word_embeddings)
        elif c.model_type == "bert":
            e.update(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_layers=c.num_hidden_layers,
                     num_heads=c.num_attention_heads, num_kv_heads=c.num_attention_heads,
                     head_dim=c.hidden_size // c.num_attention_heads, intermediate_size=c.intermediate_size,
                     max_position_embeddings=c.max_position_embeddings, norm_eps=c.layer_norm_eps,
                     type_vocab_size=c.type_vocab_size, hidden_act=c.hidden_act)
        expected[name] = e
    expected["llama_v4_dynamic"] = dict(
        model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_layers=32,
        num_heads=32, num_kv_heads=8, head_dim=128, max_position_embeddings=4096, norm_eps=1e-5,
        rope_theta=10000.0, rope_type="dynamic", rope_factor=2.0, rotary_dim=32, tie_word_embeddings=False,
        hidden_act="silu")
    expected["bloom_v4"] = dict(model_type="bloom", vocab_size=250880, hidden_size=1024, num_layers=24,
                                num_heads=16, num_kv_heads=16, head_dim=64, intermediate_size=4096,
                                norm_eps=1e-5, tie_word_embeddings=True)
    (d / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


def xorshift_fixture():
    mask = (1 << 64) - 1

    def stream(seed, n):
        s = seed if seed else 0x9E3779B97F4A7C15  # kite's replacement for the stuck seed 0
        out = []
        for _ in range(n):
            s ^= s >> 12
            s ^= (s << 25) & mask
            s ^= s >> 27
            out.append(((s * 0x2545F4914F6CDD1D) & mask) >> 32)
        return out

    seeds = [0, 1, 42, 2**64 - 1]
    (OUT / "xorshift.json").write_text(json.dumps({str(s): stream(s, 8) for s in seeds}, indent=1) + "\n")


if __name__ == "__main__":
    xorshift_fixture()
    safetensors_fixtures()
    config_fixtures()
    print("wrote", OUT)
