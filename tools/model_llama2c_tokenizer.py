#!/usr/bin/env python3
"""An independent Python implementation of llama2.c's tokenizer (run.c: build_tokenizer,
encode, decode), written from run.c's semantics, used as the oracle of kite's C++ tokenizer.

It works on bytes, as run.c does on C strings:
  encode: optional BOS (1); the dummy-prefix token " " when the text is not empty; each UTF-8
          character (a lead byte and up to 3 continuation bytes) looked up as a piece, else one
          byte-fallback token <0xXX> = byte + 3 per byte; then, repeatedly, the adjacent pair whose
          concatenation is a piece with the highest score (> -1e10; the leftmost on ties) is
          merged; optional EOS (2).
  decode: after BOS a leading space of the piece is dropped; a piece <0xHH> is the raw byte.

Usage as a module: load(path) -> (vocab, scores, max_token_length); encode(...); decode(...).
As a script: python3 tools/model_llama2c_tokenizer.py TOKENIZER.bin "some text"
"""
import re
import struct
import sys

BOS, EOS = 1, 2
_BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{2})>")


def load(path, vocab_size=None):
    """Reads tokenizer.bin: int32 max_token_length, then (float32 score, int32 len, bytes)*."""
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off = 4
    vocab, scores = [], []
    while off < len(data) and (vocab_size is None or len(vocab) < vocab_size):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        vocab.append(data[off:off + n])
        scores.append(score)
        off += n
    return vocab, scores, max_len


class Tokenizer:
    def __init__(self, path, vocab_size=None):
        self.vocab, self.scores, self.max_token_length = load(path, vocab_size)
        # run.c sorts the vocabulary and binary-searches it; with unique pieces that is a dict.
        self.lookup = {}
        for i, p in enumerate(self.vocab):
            self.lookup.setdefault(p, i)

    def encode(self, text: bytes, bos=True, eos=False):
        tokens = []
        if bos:
            tokens.append(BOS)
        if text:
            tokens.append(self.lookup[b" "])
        buf = b""
        for i, c in enumerate(text):
            if (c & 0xC0) != 0x80:
                buf = b""
            buf += bytes([c])
            nxt = text[i + 1] if i + 1 < len(text) else 0
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue
            tid = self.lookup.get(buf)
            if tid is not None:
                tokens.append(tid)
            else:
                tokens.extend(b + 3 for b in buf)
            buf = b""
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                tid = self.lookup.get(self.vocab[tokens[i]] + self.vocab[tokens[i + 1]])
                if tid is not None and self.scores[tid] > best_score:
                    best_score, best_id, best_idx = self.scores[tid], tid, i
            if best_idx == -1:
                break
            tokens[best_idx:best_idx + 2] = [best_id]
        if eos:
            tokens.append(EOS)
        return tokens

    def decode_piece(self, prev, token):
        piece = self.vocab[token]
        if prev == BOS and piece[:1] == b" ":
            piece = piece[1:]
        m = _BYTE_PIECE.fullmatch(piece)
        if m:
            piece = bytes([int(m.group(1), 16)])
        return piece

    def decode(self, tokens):
        """The bytes of a token sequence; BOS and EOS print nothing (SentencePiece controls)."""
        out = b""
        prev = -1
        for t in tokens:
            if t not in (BOS, EOS):
                out += self.decode_piece(prev, t)
            prev = t
        return out


if __name__ == "__main__":
    tok = Tokenizer(sys.argv[1])
    ids = tok.encode(sys.argv[2].encode("utf-8"))
    print(ids)
    print(tok.decode(ids).decode("utf-8", errors="replace"))
