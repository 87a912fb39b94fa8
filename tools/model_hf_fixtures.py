#!/usr/bin/env python3
"""Tiny random-weight decoder models of each family kite loads, made with Hugging Face
transformers, and their logits for fixed prompts: the golden fixtures of kite's decoder.

  tests/fixtures/model/hf/<family>/config.json         written by save_pretrained
  tests/fixtures/model/hf/<family>/model.safetensors   written by save_pretrained
  tests/fixtures/model/hf/<family>/expected.json       prompts (token ids), the greedy continuation
      transformers' generate() gives for each, the smallest top-2 logit gap along it, and where
      the logits are
  tests/fixtures/model/hf/<family>/logits.f32          float32 little-endian logits of every
      position of every prompt, prompts one after the other: [sum of prompt lengths][vocab]

Families (each small enough that the four together stay far below 2 MB):
  llama  GQA (4 query / 2 kv heads), RoPE rotate_half with linear scaling (factor 2), RMSNorm,
         SwiGLU, separate lm_head, stored F32
  qwen2  4 query heads / 1 kv head, q/k/v biases, tied embeddings, stored BF16
  bloom  MHA, ALiBi, fused per-head query_key_value, embedding LayerNorm, stored F16
  gpt2   MHA, learned positions, Conv1D (transposed) weights, fused c_attn, stored F32

Every parameter is redrawn from a seeded torch generator at a scale that gives O(1) logits (the
default 0.02 initialisation makes them so small that any error would pass a 1e-4 test), norm
weights around 1 and biases around 0, and is rounded to the stored dtype before the logits are
computed, so the fixture logits are exactly those of the weights in the file.

Usage: python3 tools/model_hf_fixtures.py   (needs torch, transformers, safetensors)
"""
import json
import pathlib

import numpy as np
import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "model" / "hf"

VOCAB = 96
PROMPTS = [[1, 17, 42, 5, 88, 23, 60, 9, 71], [3, 95, 0, 50, 12]]
NEW_TOKENS = 8


def families():
    return {
        "llama": (transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2), transformers.LlamaForCausalLM, torch.float32),
        "qwen2": (transformers.Qwen2Config(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2), transformers.Qwen2ForCausalLM, torch.bfloat16),
        "bloom": (transformers.BloomConfig(
            vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, layer_norm_epsilon=1e-5,
            bos_token_id=1, eos_token_id=2), transformers.BloomForCausalLM, torch.float16),
        "gpt2": (transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, layer_norm_epsilon=1e-5,
            bos_token_id=1, eos_token_id=2), transformers.GPT2LMHeadModel, torch.float32),
    }


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1 and ("norm" in name or "ln" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "wte" in name or "wpe" in name or "embed" in name or "word_embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[0] if "c_attn" in name or "c_fc" in name or "c_proj" in name else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def main():
    for seed, (family, (config, cls, dtype)) in enumerate(families().items()):
        d = OUT / family
        d.mkdir(parents=True, exist_ok=True)
        config._attn_implementation = "eager"
        model = cls(config).eval()
        randomize(model, 1000 + seed)
        with torch.no_grad():  # round the parameters (not buffers such as RoPE's inv_freq) to the stored dtype
            for prm in model.parameters():
                prm.copy_(prm.to(dtype).to(torch.float32))
        logits, expected = [], {"prompts": [], "greedy": [], "min_top2_gap": [], "vocab_size": VOCAB,
                                 "logits_file": "logits.f32", "dtype": str(dtype).replace("torch.", "")}
        with torch.no_grad():
            for prompt in PROMPTS:
                ids = torch.tensor([prompt])
                mask = torch.ones_like(ids)  # token 0 is a real token here, not padding
                out = model(ids, attention_mask=mask).logits[0]
                logits.append(out.numpy().astype("<f4"))
                gen = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                                     pad_token_id=0, output_logits=True, return_dict_in_generate=True)
                steps = torch.stack(gen.logits)[:, 0]
                top2 = torch.topk(steps, 2, dim=-1).values
                expected["prompts"].append(prompt)
                expected["greedy"].append(gen.sequences[0, len(prompt):].tolist())
                expected["min_top2_gap"].append(float((top2[:, 0] - top2[:, 1]).min()))
        expected["max_abs_logit"] = float(max(np.abs(x).max() for x in logits))
        np.concatenate(logits).tofile(d / "logits.f32")
        model.to(dtype).save_pretrained(d, safe_serialization=True)
        for extra in ("generation_config.json",):
            (d / extra).unlink(missing_ok=True)
        (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        size = sum(f.stat().st_size for f in d.iterdir())
        print(f"{family}: {size} bytes, max |logit| {expected['max_abs_logit']:.3f}, "
              f"greedy gaps {expected['min_top2_gap']}")


if __name__ == "__main__":
    main()
