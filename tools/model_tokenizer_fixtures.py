#!/usr/bin/env python3
"""Regenerates the tokenizer fixtures of tests/model (test_tokenizers).

  tests/fixtures/model/tokenizers/strings.json     ~420 varied strings: English, contractions,
      numbers, punctuation and whitespace runs, Korean, Japanese, Chinese, accents and combining
      marks, emoji (ZWJ, flags), control and format characters, long words, special tokens in
      text, plus seeded random mixtures of all of these
  tests/fixtures/model/tokenizers/llama2c_tok512.json  ids of every string under aidreams260k's
      tok512.bin (BOS on; some with EOS), from tools/model_llama2c_tokenizer.py (an independent
      implementation of llama2.c's run.c); invalid UTF-8 byte strings too
  tests/fixtures/model/tokenizers/bpe_<style>.json     tiny byte-level BPE tokenizers trained here
      with Hugging Face `tokenizers` (GPT-2 ByteLevel regex; Qwen2 NFC + Split regex; Llama 3
      regex with ignore_merges and a template post-processor; GPT-2 with add_prefix_space)
  tests/fixtures/model/tokenizers/bpe_<style>_ids.json  tokenizers' ids (and decode, where it is not
      the input) of every string (of the hand-made ones for the gpt2_prefix and llama3 variants)
  tests/fixtures/model/tokenizers/wordpiece_minilm_ids.json  all-MiniLM-L6-v2's tokenizer (BERT
      uncased WordPiece, Hugging Face tokenizers) ids of every string, untruncated and truncated
  tests/fixtures/model/tokenizers/wordpiece_minilm_reduced.json  a tokenizer.json holding only the
      vocabulary entries the WordPiece search can look up for those strings (original ids kept), so
      the test runs without the 231 KB vocab; with models/ present the full vocab is tested too

Usage: python3 tools/model_tokenizer_fixtures.py [--data KITE_DATA] [--minilm DIR]
  --data    folder holding aidreams260k/tok512.bin (default: $KITE_DATA)
  --minilm  folder with the MiniLM tokenizer.json (default: models/all-MiniLM-L6-v2, made by
            tools/fetch_minilm.py)
Needs: tokenizers (Hugging Face).
"""
import argparse
import json
import os
import pathlib
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "model" / "tokenizers"
sys.path.insert(0, str(ROOT / "tools"))
import model_llama2c_tokenizer  # noqa: E402

QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

HANDMADE = [
    "", " ", "  ", "a", "Hello world", "Hello, world!", " leading space", "trailing space ",
    "  two leading", "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've done what she's said; we'd go, don't you think? It's OK.",
    "I'M SURE YOU'LL SEE THEY'VE DONE WHAT SHE'S SAID", "'s 't 're 've 'm 'll 'd", "'S'T'RE'VE'M'LL'D",
    "rock'n'roll o'clock y'all", "'hello' \"quoted\" `backticks`",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 +7 1,000,000 1e-9 0x1F 2024-06-11",
    "Phone: (555) 123-4567, ZIP 90210", "version v1.2.3-rc4", "x=1+2*3/4-5%6^7", "a1b2c3 123abc abc123",
    "!!!", "???!!!...", "Wait... what?!?!", "---===+++", "(((nested)))", "[brackets] {braces} <angles>",
    "a  b   c    d", "tab\tseparated\tvalues", "line one\nline two\n\nline four", "windows\r\nline\r\nendings",
    "mixed \t \n \r\n whitespace", "   \n\n   ", "\n", "\r\n\r\n", "ends with newline\n", "\t\tindented",
    "trailing spaces and newline   \n", "a \n b", "x  \n\n  y",
    "café naïve résumé Ångström façade jalapeño", "Crème brûlée à la française", "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ",
    "e\u0301 a\u0300 o\u0308 n\u0303", "e\u0301\u0327 combining stack", "\u0301 leading combining mark",
    "Straße groß İstanbul ǅemal ß ẞ", "ﬁnance ﬂower ﬀ", "ＡＢＣ ｆｕｌｌｗｉｄｔｈ １２３", "x² y³ ½ ¼ Ⅻ ⅷ ①②",
    "Ελληνικά γράμματα ΣΑΣ σας", "Русский текст с буквой ё", "עברית שלום", "العربية مرحبا",
    "हिन्दी नमस्ते", "ภาษาไทย สวัสดี", "Tiếng Việt có dấu",
    "한국어 문장입니다.", "안녕하세요, 세계! 반갑습니다.", "서울특별시 강남구 테헤란로 123", "ㄱㄴㄷ ㅏㅑㅓ 한글 자모",
    "日本語の文章です。", "カタカナ ひらがな 漢字", "中文句子，包含标点。", "混合 text 和 English 123",
    "𠀀𠀁 CJK extension B", "ｶﾀｶﾅ half width",
    "emoji 😀 😃 😄 😁", "👍🏽 skin tone", "👨‍👩‍👧‍👦 family ZWJ", "🇰🇷🇺🇸 flags", "❤️ heart VS16", "🥲🫠 newer emoji",
    "☃ ★ ♥ ✓ ✗ → ← ↑ ↓ ∞ ≈ ≠ ≤ ≥ ∑ ∏ √ ∫", "€100 £50 ¥1000 ₩5000 $20 ¢5", "© ® ™ § ¶ † ‡ • … ‰",
    "ctrl\x00null", "bell\x07char", "esc\x1b[0m", "\x01\x02\x03", "del\x7fchar", "c1\x85next\x9fend",
    "zero\u200bwidth", "bom\ufeffinside", "nbsp\u00a0here", "ideographic\u3000space", "thin\u2009space",
    "line\u2028sep", "para\u2029sep", "soft\u00adhyphen", "rtl\u200fmark", "\u2066isolate\u2069",
    "private\ue000use", "replacement\ufffdchar", "\U000e0001tag", "unassigned\u0378char",
    "Supercalifragilisticexpialidocious", "a" * 99, "b" * 100, "c" * 101, "d" * 150,
    "antidisestablishmentarianism " * 3, "pneumonoultramicroscopicsilicovolcanoconiosis",
    "https://example.com/path?query=1&x=y#frag", "user@example.com", "C:\\Windows\\System32",
    "def f(x):\n    return x ** 2  # square", "if (a && b || !c) { return; }", "<html><body>text</body></html>",
    "[CLS] hello [SEP]", "hello [MASK] world", "[UNK][PAD]", "<|endoftext|>", "Hello<|endoftext|>World",
    "a <|endoftext|> b", "<|im_start|>user\nhi<|im_end|>", "<|im_start|><|im_end|>", "<|begin_of_text|>x",
    "ALL CAPS SENTENCE", "MiXeD cAsE wOrDs", "snake_case_words and kebab-case-words", "CamelCaseIdentifier",
    "¿Qué? ¡Sí!", "«guillemets» „low quotes“ ‘single’ “double”", "em—dash en–dash", "a・b", "「括弧」",
    "1st 2nd 3rd 4th", "$$$ ### @@@ %%% &&&", "  ,  .  ;  ", "..", "word.", ".word", "U.S.A.", "e.g. i.e.",
    "Proteins such as p53 and BRCA1/2 regulate DNA repair (n=1,234; p<0.001).",
    "IL-6 levels were 2.5-fold higher in patients ≥65 years.", "β-amyloid and α-synuclein aggregation",
    "The 5′-UTR and 3′ end", "Na+/K+-ATPase", "CO₂ and H₂O", "10 µm × 5 µm", "37 °C",
]

POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n\r",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "'s't're've'm'll'd", "àéîõüçñßøåæœ", "\u0300\u0301\u0308\u0327\u0303",
    "가나다라마바사아자차카타파하한국어", "日本中文漢字語", "ひらがなカタカナ", "😀👍🏽❤️🇰🇷\u200d🥲", "\x00\x01\x07\x1b\x7f\x85\x9f",
    "\u200b\u200d\ufeff\u00a0\u3000\u2028\u00ad", "ΣσςΑαβγδ", "абвгдеёжз", "①½²Ⅻ٣۴", "ſ\u212a\u0130ǅ",
]


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 6)
        pools = rng.sample(POOLS, k)
        length = rng.randint(1, 48)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(length))
        out.append(s)
    return out


def all_strings():
    return HANDMADE + random_strings(300)


def write(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n")


def llama2c_fixture(strings, data_dir):
    tok_path = pathlib.Path(data_dir) / "aidreams260k" / "tok512.bin"
    if not tok_path.exists():
        print("skipping llama2.c fixture: no", tok_path)
        return
    tok = model_llama2c_tokenizer.Tokenizer(str(tok_path), vocab_size=512)
    cases = [{"i": i, "ids": tok.encode(s.encode("utf-8"), bos=True, eos=(i % 7 == 3)), "eos": i % 7 == 3}
             for i, s in enumerate(strings)]
    raw = [b"\xff\xfe", b"abc\x80def", b"\xe2\x82", b"\xf0\x9f\x98", b"ok\xc3", b"\xc3\xa9\xcc", b"\xed\xa0\x80",
           b"\xf4\x90\x80\x80x", b"\x80\x80\x80\x80\x80", b"\xe2\x82\xac\xe2\x82\xac\x82\x82"]
    bytes_cases = [{"hex": r.hex(), "ids": tok.encode(r, bos=True, eos=False)} for r in raw]
    write(OUT / "llama2c_tok512.json", {"cases": cases, "bytes": bytes_cases})


TRAIN_TEXT = """
Tokenizers split text into pieces that a model can embed. Byte-level BPE starts from the 256 bytes and
learns merges of frequent pairs: th, the, ing, tion. It never needs an unknown token, because every
byte has a symbol. Numbers like 2024, 3.14159 and 1,000,000 are split into digits or groups of digits.
Don't forget contractions: I'm, you're, we've, they'll, she'd, it's. Whitespace runs and new lines
matter too.  Two spaces.   Three spaces.\tTabs.\nNew lines.\r\nWindows line endings.
한국어 문장도 토큰화합니다. 안녕하세요, 반갑습니다. 서울과 부산. 日本語の文章。中文句子。
Café, naïve, résumé, Ångström, jalapeño, façade. Straße. Ελληνικά. Русский текст.
Emoji: 😀 👍🏽 ❤️ 🇰🇷. Symbols: → ∞ ≈ € £ ¥ © ®. Code: def f(x): return x ** 2.
The quick brown fox jumps over the lazy dog. The five boxing wizards jump quickly.
Proteins such as p53 regulate DNA repair; IL-6 levels were 2.5-fold higher (p<0.001).
"""


def train_bpe(style):
    tok = Tokenizer(models.BPE(ignore_merges=(style == "llama3")))
    specials = ["<|endoftext|>"] if style.startswith("gpt2") else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if style == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    if style.startswith("gpt2"):
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=(style == "gpt2_prefix"), use_regex=True)
    else:
        pattern = QWEN2_RE if style == "qwen2" else LLAMA3_RE
        if style == "qwen2":
            tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    if style == "llama3":
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=1, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [TRAIN_TEXT] * 3 + HANDMADE
    tok.train_from_iterator(corpus, trainer)
    if style == "qwen2":
        # A non-special added token that is matched after normalization, like user tokens.
        tok.add_tokens(["kite-token"])
    return tok


def bpe_fixtures(strings):
    for style in ("gpt2", "gpt2_prefix", "qwen2", "llama3"):
        tok = train_bpe(style)
        tok.no_padding()
        tok.no_truncation()
        path = OUT / f"bpe_{style}.json"
        path.write_text(tok.to_str(pretty=False) + "\n")
        tok = Tokenizer.from_file(str(path))  # what the test reads
        # The variants are checked on the hand-made strings; GPT-2 and Qwen2 on all of them.
        subset = strings if style in ("gpt2", "qwen2") else strings[:len(HANDMADE)]
        cases = []
        for text in subset:
            enc = tok.encode(text)
            case = {"ids": enc.ids}
            decoded = tok.decode(enc.ids, skip_special_tokens=False)
            skipped = tok.decode(enc.ids, skip_special_tokens=True)
            if decoded != text:
                case["decoded"] = decoded  # stored only where decode(encode(s)) != s
            if skipped != decoded:
                case["decoded_skip"] = skipped
            if style == "gpt2":
                # The pieces as byte lengths: ByteLevel shows each piece one character per byte.
                case["pieces"] = [len(p) for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]
            cases.append(case)
        write(OUT / f"bpe_{style}_ids.json", {"cases": cases})
        print(f"bpe {style}: vocab {tok.get_vocab_size()}, {path.stat().st_size} bytes")


def wordpiece_candidates(word, vocab, max_chars=100):
    """Every vocabulary entry the greedy longest-match search can look up for `word`."""
    chars = list(word)
    if len(chars) > max_chars:
        return set()
    found = set()
    for start in range(len(chars)):
        for end in range(start + 1, len(chars) + 1):
            sub = "".join(chars[start:end])
            if start > 0:
                sub = "##" + sub
            if sub in vocab:
                found.add(sub)
    return found


def wordpiece_fixtures(strings, minilm_dir):
    path = pathlib.Path(minilm_dir) / "tokenizer.json"
    if not path.exists():
        print("skipping WordPiece fixtures: no", path, "(run tools/fetch_minilm.py)")
        return
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    cases = []
    for s in strings:
        cases.append({"ids": tok.encode(s).ids})
    # Truncation as sentence-transformers runs it (max_seq_length 256) and at a small length.
    long_text = " ".join(HANDMADE[10:60]) * 3
    trunc = []
    for max_len in (256, 16, 3, 2):
        tok.enable_truncation(max_length=max_len)
        trunc.append({"max_length": max_len, "text": long_text, "ids": tok.encode(long_text).ids})
    tok.no_truncation()
    write(OUT / "wordpiece_minilm_ids.json", {"cases": cases, "truncation": trunc})

    # Reduced vocabulary: what the search can touch, plus the specials; ids unchanged.
    full = json.loads(path.read_text())
    vocab = full["model"]["vocab"]
    keep = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    for s in strings + [long_text]:
        norm = tok.normalizer.normalize_str(s)
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(norm):
            keep |= wordpiece_candidates(word, vocab)
    reduced = dict(full)
    reduced["model"] = dict(full["model"])
    reduced["model"]["vocab"] = {k: v for k, v in vocab.items() if k in keep}
    reduced["truncation"] = None
    reduced["padding"] = None
    write(OUT / "wordpiece_minilm_reduced.json", reduced)
    print(f"wordpiece: reduced vocab {len(reduced['model']['vocab'])} of {len(vocab)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("KITE_DATA", ""))
    ap.add_argument("--minilm", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    strings = all_strings()
    write(OUT / "strings.json", strings)
    print(f"{len(strings)} strings")
    if args.data:
        llama2c_fixture(strings, args.data)
    bpe_fixtures(strings)
    wordpiece_fixtures(strings, args.minilm)


if __name__ == "__main__":
    main()
