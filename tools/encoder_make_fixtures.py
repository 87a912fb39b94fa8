#!/usr/bin/env python3
"""Golden fixtures of kite's BERT encoder (kite/model/encoder.hpp), made with Hugging Face
transformers and sentence-transformers.

  tests/fixtures/model/bert_tiny/config.json, model.safetensors
      a tiny random-weight BertModel (hidden 32, 2 layers, 4 heads, MLP 64, vocab 99, 40
      positions) written by save_pretrained; every parameter redrawn at a scale that gives O(1)
      activations (the default 0.02 initialisation would hide errors)
  tests/fixtures/model/bert_tiny/expected.json
      token sequences of different lengths, run by transformers as ONE padded batch with an
      attention mask (so the fixture pins down padding), and for each: the last hidden states
      of its real tokens and the mean-pooled, L2-normalised embedding

  tests/fixtures/model/minilm_sentences.json
      200 varied texts (short and long English, punctuation, numbers, accents, Korean, Chinese,
      emoji, control characters, texts longer than 256 word pieces) and their word-piece ids
      from the model's tokenizer (truncated to 256 like the model)
  tests/fixtures/model/minilm_embeddings.safetensors
      "embeddings": F32 [200][384], sentence-transformers' all-MiniLM-L6-v2 embeddings of those
      texts (max_seq_length 256, mean pooling, normalize_embeddings=True); float32 so that the
      test can compare element by element at float32 precision

The MiniLM part needs the model folder that tools/fetch_minilm.py fetches (models/all-MiniLM-L6-v2).
The folder has no modules.json, so sentence-transformers builds Transformer + mean Pooling itself
and would default to 512 tokens; max_seq_length is set to 256 explicitly, as the model's
sentence_bert_config.json says.

Usage: python3 tools/encoder_make_fixtures.py [--model DIR] [--only tiny|minilm]   (needs torch,
       transformers, sentence-transformers, safetensors)
"""
import argparse
import json
import pathlib

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "model"

TINY_SEQUENCES = [
    [2, 17, 42, 5, 88, 23, 60, 9, 71, 3],
    [2, 95, 0, 50, 12, 3],
    [2, 3],
    [2] + [(7 * i + 11) % 99 for i in range(35)] + [3],
    [2, 64, 3],
]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1 and "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def tiny_bert():
    d = OUT / "bert_tiny"
    d.mkdir(parents=True, exist_ok=True)
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
                                     layer_norm_eps=1e-12, hidden_act="gelu", pad_token_id=0)
    config._attn_implementation = "eager"
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    randomize(model, 2024)
    n = max(len(s) for s in TINY_SEQUENCES)
    ids = torch.zeros(len(TINY_SEQUENCES), n, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(TINY_SEQUENCES):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    with torch.no_grad():
        states = model(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = {"sequences": TINY_SEQUENCES, "states": [], "embeddings": []}
    for i, s in enumerate(TINY_SEQUENCES):
        h = states[i, :len(s)].double()
        e = h.mean(0)
        e = e / e.norm().clamp_min(1e-12)
        expected["states"].append([round(float(v), 7) for v in h.flatten()])
        expected["embeddings"].append([round(float(v), 7) for v in e])
    model.save_pretrained(d, safe_serialization=True)
    (d / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"bert_tiny: {sum(f.stat().st_size for f in d.iterdir())} bytes")


ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "How many people live in Seoul?",
    "What is the capital of Australia?",
    "The mitochondria is the powerhouse of the cell.",
    "Machine learning models can be biased by their training data.",
    "Please remember to bring your umbrella tomorrow; it will rain.",
    "She sells sea shells by the sea shore.",
    "Transformers use self-attention to relate every token to every other token.",
    "In 1969, Apollo 11 landed on the Moon.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The stock market fell 3.5% on Tuesday after the interest-rate announcement.",
    "I can't believe it's not butter!",
    "Do androids dream of electric sheep?",
    "Aspirin reduces the risk of heart attack in some patients.",
    "The committee will meet again on 2024-03-15 at 10:30 a.m.",
    "E = mc^2 relates energy and mass.",
    "Smoking causes lung cancer.",
    "Regular exercise improves cardiovascular health and mood.",
    "The patient's blood pressure was 140/90 mmHg.",
    "Antibiotics are ineffective against viral infections such as the common cold.",
    "BRCA1 mutations increase the risk of breast and ovarian cancer.",
    "The Great Wall of China is visible from low Earth orbit, according to a popular myth.",
    "Photosynthesis converts light energy into chemical energy.",
    "He said, \"Let's meet at the cafe near the station.\"",
    "Email me at someone@example.com or visit https://example.org/path?q=1.",
    "C++20 added concepts, ranges and coroutines.",
    "The results were statistically significant (p < 0.001).",
    "Over 90% of participants completed the twelve-week program.",
    "A dog is running through the grass.",
    "Two children are playing soccer in the park.",
    "The sun rises in the east and sets in the west.",
    "Coffee consumption is linked to a lower risk of type 2 diabetes.",
    "Microglia mediate synaptic pruning during brain development.",
    "The T cell receptor recognizes peptides presented by MHC molecules.",
    "COVID-19 vaccines reduce hospitalization rates.",
    "unbelievably, the hyperparameterization of the anti-inflammatory pseudoscience was unconvincing",
    "ALL CAPS SENTENCES ARE SHOUTING.",
    "mIxEd CaSe TeXt ShOuLd Be LoWeReD.",
]
ACCENTS = [
    "Café au lait and crème brûlée are French classics.",
    "The naïve coöperation of the façade's résumé.",
    "São Paulo is the largest city in Brazil.",
    "Dvořák and Škoda are Czech names.",
    "Zürich liegt in der Schweiz; Straße means street.",
    "El niño comió piñata en la mañana.",
    "Ångström is a unit of length equal to 10^-10 metres.",
    "Ørsted discovered electromagnetism.",
]
KOREAN = [
    "서울은 대한민국의 수도이다.",
    "오늘 날씨가 정말 좋네요.",
    "이 숙소는 위치가 좋고 깨끗했어요.",
    "정부는 새로운 정책을 발표했다.",
    "한국어 문장 임베딩 테스트입니다.",
    "커피 한 잔 주세요.",
]
OTHER = [
    "我爱北京天安门。",
    "机器学习是人工智能的一个分支。",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "Γειά σου κόσμε",
    "I love pizza 🍕 and ice cream 🍦!",
    "Great job 👍👍 see you soon 😀",
    "tab\tseparated\tvalues and a\nnew line",
    "control\u0007char and zero\u200bwidth and soft\u00adhyphen",
    "",
    "   ",
    "?!.,;:",
    "a",
    "[CLS] special [SEP] tokens [MASK] in text",
    "supercalifragilisticexpialidocious" * 4,
    "12345 67890 3.14159 2.71828 1e-10",
    "#hashtag @mention $100 ~tilde ^caret |pipe",
]


def fixture_texts():
    texts = ENGLISH + ACCENTS + KOREAN + OTHER
    rng = np.random.default_rng(7)
    pool = ENGLISH + ACCENTS
    # Pairs and triples of sentences: medium lengths.
    while len(texts) < 180:
        k = int(rng.integers(2, 4))
        texts.append(" ".join(pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)))
    # Paragraphs longer than 256 word pieces: truncation.
    while len(texts) < 196:
        k = int(rng.integers(18, 30))
        texts.append(" ".join(pool[int(i)] for i in rng.choice(len(pool), size=k, replace=True)))
    # Long mixed-script paragraphs.
    while len(texts) < 200:
        k = int(rng.integers(10, 20))
        allp = pool + KOREAN + OTHER[:8]
        texts.append(" ".join(allp[int(i)] for i in rng.choice(len(allp), size=k, replace=True)))
    return texts


def minilm(model_dir):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(model_dir), device="cpu")
    st.max_seq_length = 256
    texts = fixture_texts()
    assert len(texts) == 200
    emb = st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    ids = [st.tokenizer(t, truncation=True, max_length=256)["input_ids"] for t in texts]
    (OUT / "minilm_sentences.json").write_text(json.dumps(
        {"model": "sentence-transformers/all-MiniLM-L6-v2", "max_seq_length": 256, "texts": texts, "ids": ids},
        ensure_ascii=False) + "\n", encoding="utf-8")
    save_file({"embeddings": emb}, str(OUT / "minilm_embeddings.safetensors"))
    lengths = [len(i) for i in ids]
    print(f"minilm: {len(texts)} texts, word pieces {min(lengths)}..{max(lengths)}, "
          f"{sum(l == 256 for l in lengths)} truncated at 256 (sentence-transformers "
          f"{__import__('sentence_transformers').__version__}, torch {torch.__version__})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "all-MiniLM-L6-v2")
    ap.add_argument("--only", choices=["tiny", "minilm"], help="regenerate one part only")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.only != "minilm":
        tiny_bert()
    if args.only != "tiny":
        minilm(args.model)


if __name__ == "__main__":
    main()
