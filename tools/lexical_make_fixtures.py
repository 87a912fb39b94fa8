#!/usr/bin/env python3
"""Regenerates kite's lexical-retrieval golden fixtures (tests/fixtures/text/ and
tests/fixtures/retrieval/lexical/) from the reference implementations users trust:

  - Python's unicodedata (NFKC + case folding) for the Unicode word and CJK analyzers;
  - PyStemmer (Snowball English, the same algorithm as libstemmer) for the English stemmer;
  - bm25s (robertson, lucene, atire, bm25l, bm25+) and rank_bm25 (BM25Plus) for BM25 scores on
    the same tokens;
  - scikit-learn's CountVectorizer / TfidfVectorizer (defaults) and OneHotEncoder.

Usage: python3 tools/lexical_make_fixtures.py [repo root]   (needs numpy, bm25s, rank_bm25,
scikit-learn, PyStemmer). Output is deterministic (fixed seeds).
"""
import json
import math
import random
import sys
import unicodedata
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
TEXT_DIR = ROOT / "tests" / "fixtures" / "text"
LEX_DIR = ROOT / "tests" / "fixtures" / "retrieval" / "lexical"


def write_json(path, obj, indent=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, sort_keys=True)
        f.write("\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


# ---------------------------------------------------------------------------------------------
# Analyzers: an independent reference on Python's unicodedata.

def nfkc_casefold(s):
    # NFKC_Casefold without removing default-ignorables (the fixture texts contain none).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).casefold())


def is_cjk(c):
    o = ord(c)
    ranges = [(0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029),
              (0x3031, 0x3035), (0x3038, 0x303B), (0x3041, 0x30FF), (0x3130, 0x318F),
              (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F),
              (0xAC00, 0xD7AF), (0xD7B0, 0xD7FF), (0xF900, 0xFAFF), (0x1B000, 0x1B16F),
              (0x20000, 0x3134F)]
    return any(a <= o <= b for a, b in ranges)


def char_class(c):
    cat = unicodedata.category(c)
    if cat[0] == "M":
        return "mark"
    if cat[0] in "LN":
        return "cjk" if is_cjk(c) else "word"
    return "sep"


def words_reference(text):
    out, w = [], ""
    for c in nfkc_casefold(text):
        k = char_class(c)
        if k in ("word", "cjk"):
            w += c
        elif k == "mark":
            if w:
                w += c
        elif w:
            out.append(w)
            w = ""
    if w:
        out.append(w)
    return out


def cjk_reference(text):
    out, w, run, prev = [], "", 0, ""

    def flush_run():
        nonlocal run
        if run == 1:
            out.append(prev)
        run = 0

    for c in nfkc_casefold(text):
        k = char_class(c)
        if k == "word":
            flush_run()
            w += c
        elif k == "mark":
            if w:
                w += c
        elif k == "cjk":
            if w:
                out.append(w)
                w = ""
            if run > 0:
                out.append(prev + c)
            prev = c
            run += 1
        else:
            if w:
                out.append(w)
                w = ""
            flush_run()
    if w:
        out.append(w)
    flush_run()
    return out


ANALYZER_TEXTS = [
    "Hello, World! It's 2024.",
    "The QUICK brown fox -- jumped over 3 lazy dogs.",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ﬁne ligatures",
    "Straße STRASSE straße ǅemal Ǆ",
    "café CAFÉ cafe\u0301 naïve résumé",
    "ΣΊΣΥΦΟΣ Ὀδυσσεύς καὶ ἡ θάλασσα",
    "Москва — столица России",
    "x²+y²=z² ½ ⅓ № ℃ ㎏ ① ⑵",
    "हिन्दी भाषा देवनागरी",
    "e-mail: foo_bar@example.com, url http://a.b/c?d=1",
    "안녕하세요 반갑습니다 안녕 서울",
    "서울2024년 Seoul 特別市 東京タワー ｶﾀｶﾅ",
    "日本語のテキスト、中文文本。한국어 텍스트!",
    "漢 字 한 글",
    "mixed中文text한국어english",
    "a=\u0338b <\u0338 c >\u0338d",
    "\u0301leading mark and tab\there",
    "ＡＢＣ－ｄｅｆ　ＧＨＩ",
    "I❤NY 🙂 emoji👍🏽 end",
]

ENGLISH_WORDS = """
caresses ponies ties caress cats feed agreed disabled matting mating meeting milling messing
meetings happy sky relational conditional rational valenci hesitanci digitizer conformabli
radicalli differentli vileli analogousli vietnamization predication operator feudalism
decisiveness hopefulness callousness formality sensitivity sensibility triplicate formative
formalize electriciti electrical hopeful goodness revival allowance inference airliner
gyroscopic adjustable defensible irritant replacement adjustment dependent adoption homologou
communism activate angulariti homologous effective bowdlerize probate rate cease controll
roll generously running runs ran runner studies studying studied cells cellular proteins
protein expression expressed expresses patients patient treatment treatments therapeutic
therapies clinical trials randomized controlled mutation mutations mutated genome genomic
association associated associations significantly significant reduces reduction reduced
inflammation inflammatory antibodies antibody vaccination vaccines vaccinated mortality
children's women's isn't don't o'neill knives wives lives living lived news dying lying
generalizations oscillators consolidated consolidating skies dying innings outing canning
""".split()


def make_text_fixtures():
    import Stemmer  # PyStemmer: Snowball, the same algorithms as libstemmer
    st = Stemmer.Stemmer("english")
    words = sorted(set(w.lower() for w in ENGLISH_WORDS))
    write_json(TEXT_DIR / "english_stems.json", {
        "source": "PyStemmer english (Snowball Porter2)",
        "words": words,
        "stems": [st.stemWord(w) for w in words],
    })
    write_json(TEXT_DIR / "analyzers.json", {
        "source": "Python unicodedata " + unicodedata.unidata_version +
                  ": NFKC(casefold(NFKC(text))), split on non-letter/digit, CJK bigrams",
        "cases": [{"text": t, "unicode_words": words_reference(t), "cjk_bigram": cjk_reference(t)}
                  for t in ANALYZER_TEXTS],
    })


# ---------------------------------------------------------------------------------------------
# BM25: bm25s (all five variants) and rank_bm25 (BM25Plus) on the same token ids.

def zipf_corpus(rng, n_docs, vocab, max_len):
    weights = [1.0 / (r + 1) ** 1.1 for r in range(vocab)]
    docs = []
    for i in range(n_docs):
        n = 0 if i == 7 else rng.randint(1, max_len)   # one empty document
        docs.append(rng.choices(range(vocab), weights=weights, k=n))
    docs.append([vocab - 1] * 5)                        # a rare token repeated
    return docs


def bm25_queries(rng, vocab):
    qs = [[0], [1, 1], [vocab - 1], [vocab + 5], [vocab + 5, 3]]   # frequent, repeated, rare, unknown
    for _ in range(11):
        qs.append([rng.randrange(vocab + 10) for _ in range(rng.randint(1, 8))])
    return qs


def make_bm25_fixtures():
    import bm25s
    import numpy as np
    import rank_bm25
    rng = random.Random(20240607)
    vocab = 150
    docs = zipf_corpus(rng, 80, vocab, 40)
    queries = bm25_queries(rng, vocab)
    tok = lambda ids: [f"t{i}" for i in ids]
    corpus_tokens = [tok(d) for d in docs]
    cases = []
    for k1, b, delta in [(1.2, 0.75, 0.5), (1.6, 0.3, 1.0)]:
        for method in ["robertson", "lucene", "atire", "bm25l", "bm25+"]:
            r = bm25s.BM25(method=method, k1=k1, b=b, delta=delta, dtype="float64")
            r.index(corpus_tokens, show_progress=False)
            scores = [r.get_scores(tok(q)).tolist() for q in queries]
            cases.append({"library": "bm25s", "variant": method.replace("+", "plus"),
                          "k1": k1, "b": b, "delta": delta, "scores": scores})
        # rank_bm25's BM25L multiplies by the term frequency a second time (idf * tf * ...), which
        # is neither Lv & Zhai's BM25L nor bm25s's; only its BM25Plus is the published formula.
        for name, cls in [("bm25plus", rank_bm25.BM25Plus)]:
            r = cls(corpus_tokens, k1=k1, b=b, delta=delta)
            scores = [np.asarray(r.get_scores(tok(q)), dtype=np.float64).tolist() for q in queries]
            cases.append({"library": "rank_bm25", "variant": name,
                          "k1": k1, "b": b, "delta": delta, "scores": scores})
    for c in cases:
        c["scores"] = [[float(f"{x:.10g}") for x in row] for row in c["scores"]]
    write_json(LEX_DIR / "bm25_scores.json", {
        "source": f"bm25s {bm25s.__version__} (dtype float64) and rank_bm25 on token ids",
        "docs": docs, "queries": queries, "cases": cases,
    }, indent=None)


# ---------------------------------------------------------------------------------------------
# Bag of words, TF-IDF (defaults) and one-hot: scikit-learn on the same tokens.

def make_sklearn_fixtures():
    import sklearn
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel
    from sklearn.preprocessing import OneHotEncoder
    rng = random.Random(99)
    vocab = 60
    docs = zipf_corpus(rng, 40, vocab, 25)
    queries = bm25_queries(rng, vocab)[:10]
    tok = lambda ids: [f"t{i}" for i in ids]
    ident = lambda x: x  # analyzer: the documents are already token lists
    cv = CountVectorizer(analyzer=ident)
    counts = cv.fit_transform([tok(d) for d in docs])
    tv = TfidfVectorizer(analyzer=ident)
    tfidf = tv.fit_transform([tok(d) for d in docs])
    qv = tv.transform([tok(q) for q in queries])
    names = [int(n[1:]) for n in cv.get_feature_names_out()]

    def sparse_rows(m, names):
        out = []
        for r in range(m.shape[0]):
            row = m.getrow(r)
            out.append([[names[c], float(f"{v:.10g}")] for c, v in zip(row.indices, row.data)])
            out[-1].sort()
        return out

    assert [int(n[1:]) for n in tv.get_feature_names_out()] == names
    sims = linear_kernel(qv, tfidf)   # rows are unit L2: cosine similarity
    categories = ["seoul", "busan", "incheon", "seoul", "daegu", "busan", "서울", "부산", "apple", "Apple"]
    enc = OneHotEncoder()
    onehot = enc.fit_transform([[c] for c in categories]).toarray()
    write_json(LEX_DIR / "sklearn_vectors.json", {
        "source": f"scikit-learn {sklearn.__version__} CountVectorizer / TfidfVectorizer defaults "
                  "(analyzer = the given tokens), linear_kernel, OneHotEncoder",
        "docs": docs, "queries": queries,
        "counts": sparse_rows(counts, names),
        "tfidf": sparse_rows(tfidf, names),
        "idf": {str(n): float(f"{v:.12g}") for n, v in zip(names, tv.idf_)},
        "query_tfidf": sparse_rows(qv, names),
        "cosine": [[float(f"{x:.10g}") for x in row] for row in sims],
        "onehot_values": categories,
        "onehot_categories": [str(c) for c in enc.categories_[0]],
        "onehot": onehot.astype(int).tolist(),
    }, indent=None)


if __name__ == "__main__":
    make_text_fixtures()
    make_bm25_fixtures()
    make_sklearn_fixtures()
