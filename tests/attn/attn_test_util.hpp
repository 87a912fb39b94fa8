#pragma once
// Helpers of the attention tests (tests/attn and tests/kv): random problems in kite's
// [b][s][h][d] layout, a float64 oracle written straight from the definition of attention,
// and the full product of the parameters every kernel path must be checked over.
// Comparisons use kite::test::max_abs_diff (kite_compare.hpp), which fails on NaN.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "kite/attn.hpp"
#include "kite/core/half.hpp"
#include "kite/pos/alibi.hpp"
#include "kite_test.hpp"

namespace kite::test {

/// n values of mean 0 and standard deviation `scale`, seeded: the sum of four uniforms
/// (Irwin-Hall, within +-3.46 sigma) from splitmix64. Several times faster than
/// std::normal_distribution, which dominated the time of the product tests below.
inline std::vector<float> fast_randn(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
    std::vector<float> x(n);
    std::uint64_t state = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    const float unit = scale * 1.7320508f / 65536.0f;  // sqrt(3): the sum of 4 U(0, 1) has variance 1/3
    for (auto& v : x) {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        const auto sum =
            static_cast<std::int64_t>((z & 0xffff) + ((z >> 16) & 0xffff) + ((z >> 32) & 0xffff) + (z >> 48));
        v = static_cast<float>(sum - 2 * 65536 + 2) * unit;
    }
    return x;
}

/// A prefill problem: q [batch][q_seq][n_q][d], k/v [batch][kv_seq][n_kv][d] (stored as T),
/// per-sequence lengths, values from fast_randn. Padding is poisoned so that a kernel reading
/// it fails: query rows past q_len are NaN, keys and values past kv_len are 1e4 (finite, for
/// the caches' checks).
template <class T = float>
struct attn_problem {
    index_t batch = 1, q_seq = 1, kv_seq = 1, n_q = 1, n_kv = 1, d = 16;
    std::vector<index_t> q_lens, kv_lens;
    std::vector<float> q;
    std::vector<T> k, v;

    attn_problem(index_t batch_, std::vector<index_t> q_lens_, std::vector<index_t> kv_lens_, index_t n_q_,
                 index_t n_kv_, index_t d_, std::uint64_t seed, float q_scale = 1.0f)
        : batch(batch_), n_q(n_q_), n_kv(n_kv_), d(d_), q_lens(std::move(q_lens_)), kv_lens(std::move(kv_lens_)) {
        for (auto x : q_lens) q_seq = std::max(q_seq, x);
        for (auto x : kv_lens) kv_seq = std::max(kv_seq, x);
        q = fast_randn(batch * q_seq * n_q * d, seed, q_scale);
        const auto kf = fast_randn(batch * kv_seq * n_kv * d, seed + 1);
        const auto vf = fast_randn(batch * kv_seq * n_kv * d, seed + 2);
        for (float x : kf) k.push_back(from_float<T>(x));
        for (float x : vf) v.push_back(from_float<T>(x));
        for (index_t b = 0; b < batch; ++b) {
            for (index_t i = q_lens[b]; i < q_seq; ++i)
                std::fill_n(q.begin() + (b * q_seq + i) * n_q * d, n_q * d, std::numeric_limits<float>::quiet_NaN());
            for (index_t j = kv_lens[b]; j < kv_seq; ++j) {
                std::fill_n(k.begin() + (b * kv_seq + j) * n_kv * d, n_kv * d, from_float<T>(1e4f));
                std::fill_n(v.begin() + (b * kv_seq + j) * n_kv * d, n_kv * d, from_float<T>(1e4f));
            }
        }
    }
    tensor_view<const float, 4> qv() const { return {q.data(), {batch, q_seq, n_q, d}}; }
    tensor_view<const T, 4> kv4() const { return {k.data(), {batch, kv_seq, n_kv, d}}; }
    tensor_view<const T, 4> vv4() const { return {v.data(), {batch, kv_seq, n_kv, d}}; }
    attn::tensor_kv<T> kv() const { return attn::tensor_kv<T>(kv4(), vv4(), kv_lens); }
    std::vector<float> out() const { return std::vector<float>(batch * q_seq * n_q * d, 12345.0f); }
    tensor_view<float, 4> ov(std::vector<float>& o) const { return {o.data(), {batch, q_seq, n_q, d}}; }
    /// Key (or value) row of token j of sequence b, kv head h, as stored (T).
    const T* k_row(index_t b, index_t j, index_t h) const { return k.data() + ((b * kv_seq + j) * n_kv + h) * d; }
    const T* v_row(index_t b, index_t j, index_t h) const { return v.data() + ((b * kv_seq + j) * n_kv + h) * d; }
};

/// Attention from its definition, in double, independent of kite's kernels and views:
/// query i of sequence b sits at position p = kv_len - q_len + i; query head h reads kv head
/// h / (n_q / n_kv) (Hugging Face's repeat_kv); key j gets the score
///   s_j = q·k_j / sqrt(d) + slope_h * (j - p)      (slope 0 without ALiBi)
/// and is visible unless the mask is causal and j > p; the output is sum_j softmax(s)_j v_j
/// over the visible keys, zero when none is visible, and zero in rows past q_len.
/// K and V are read as stored (T converted exactly to double). Returns [batch][q_seq][n_q][d].
template <class T>
std::vector<double> oracle_attention(const attn_problem<T>& p, attn::mask mask, std::span<const float> slopes) {
    std::vector<double> out(p.batch * p.q_seq * p.n_q * p.d, 0.0);
    const index_t group = p.n_q / p.n_kv, d = p.d;
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> k(p.k.size()), v(p.v.size()), q(d), s, w;
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = to_float(p.k[i]), v[i] = to_float(p.v[i]);
    for (index_t b = 0; b < p.batch; ++b) {
        const index_t ql = p.q_lens[b], kl = p.kv_lens[b];
        for (index_t h = 0; h < p.n_q; ++h) {
            const index_t kvh = h / group;
            const double slope = slopes.empty() ? 0.0 : static_cast<double>(slopes[h]);
            auto row = [&](const std::vector<double>& x, index_t j) {
                return x.data() + ((b * p.kv_seq + j) * p.n_kv + kvh) * d;
            };
            for (index_t i = 0; i < ql; ++i) {
                const double pos = static_cast<double>(kl) - static_cast<double>(ql) + static_cast<double>(i);
                for (index_t c = 0; c < d; ++c) q[c] = p.q[((b * p.q_seq + i) * p.n_q + h) * d + c];
                // Visible keys: all of them, or those at positions <= pos.
                const index_t visible =
                    mask == attn::mask::causal ? std::min<index_t>(kl, static_cast<index_t>(pos) + 1) : kl;
                if (visible == 0) continue;
                s.assign(visible, 0.0);
                for (index_t j = 0; j < visible; ++j) {
                    const double* kj = row(k, j);
                    double dot = 0;
                    for (index_t c = 0; c < d; ++c) dot += q[c] * kj[c];
                    s[j] = scale * dot + slope * (static_cast<double>(j) - pos);
                }
                double top = s[0];  // softmax is unchanged by subtracting the max; exp stays finite
                for (index_t j = 1; j < visible; ++j) top = s[j] > top ? s[j] : top;
                w.resize(visible);
                double sum = 0;
                for (index_t j = 0; j < visible; ++j) sum += (w[j] = std::exp(s[j] - top));
                double* oi = out.data() + ((b * p.q_seq + i) * p.n_q + h) * d;
                for (index_t j = 0; j < visible; ++j) {
                    const double* vj = row(v, j);
                    const double pj = w[j] / sum;
                    for (index_t c = 0; c < d; ++c) oi[c] += pj * vj[c];
                }
            }
        }
    }
    return out;
}

// ---- the product of parameters every attention path is checked over ------------------------

/// Head configurations: MHA (group 1), GQA groups 2, 4, 8 over two kv heads, and MQA with ten
/// query heads (more than the eight a flash prefill item holds, and not a power of two).
enum class heads { mha, gqa2, gqa4, gqa8, mqa };
inline constexpr heads all_heads[] = {heads::mha, heads::gqa2, heads::gqa4, heads::gqa8, heads::mqa};

/// KV storage scalars.
enum class storage { f32, bf16, f16 };
inline constexpr storage all_storage[] = {storage::f32, storage::bf16, storage::f16};

/// Head dims: the common model dims (32 MiniLM, 64 GPT-2/BERT, 80 Phi-2, 96 Phi-3, 128 Llama,
/// 256 Gemma) and two that are not multiples of the SIMD width (5: less than one vector;
/// 37: a partial last vector).
inline constexpr index_t all_head_dims[] = {5, 32, 37, 64, 80, 96, 128, 256};

/// How the queries relate to the keys.
enum class queries {
    full,    ///< q_len == kv_len (prefill over an empty cache)
    prefix,  ///< q_len < kv_len (the last q_len tokens; a cached prefix precedes them)
    decode,  ///< one query at the last position (the decode entry point)
    long_decode  ///< decode over 1025 .. 2049 keys, one sequence: the context is split and merged
};

/// One combination of the product, with its batch of random odd lengths.
struct combination {
    heads head = heads::mha;
    storage store = storage::f32;
    index_t d = 0, n_q = 0, n_kv = 0, group = 0;
    attn::mask mask = attn::mask::causal;
    bool alibi = false;
    queries kind = queries::full;
    std::uint64_t seed = 0;
    std::vector<index_t> q_lens, kv_lens;
};

inline const char* name(heads h) {
    switch (h) {
        case heads::mha: return "mha (group 1)";
        case heads::gqa2: return "gqa group 2";
        case heads::gqa4: return "gqa group 4";
        case heads::gqa8: return "gqa group 8";
        default: return "mqa (group 10)";
    }
}
inline const char* name(storage s) { return s == storage::f32 ? "f32" : s == storage::bf16 ? "bf16" : "f16"; }

inline std::string describe(const combination& c) {
    std::ostringstream os;
    os << name(c.head) << " (n_q " << c.n_q << ", n_kv " << c.n_kv << ") " << name(c.store) << " KV, d " << c.d
       << (c.mask == attn::mask::causal ? ", causal" : ", bidirectional") << (c.alibi ? ", alibi" : ", no alibi")
       << (c.kind == queries::full     ? ", q_len = kv_len"
           : c.kind == queries::prefix ? ", q_len < kv_len"
           : c.kind == queries::decode ? ", decode"
                                       : ", long decode")
       << ", seed " << c.seed << ", q_lens";
    for (auto x : c.q_lens) os << ' ' << x;
    os << ", kv_lens";
    for (auto x : c.kv_lens) os << ' ' << x;
    return os.str();
}

/// An odd length in [lo, hi] (lo, hi odd).
inline index_t odd_in(std::mt19937_64& g, index_t lo, index_t hi) {
    return lo + 2 * std::uniform_int_distribution<index_t>(0, (hi - lo) / 2)(g);
}

/// Calls f.template operator()<Layout, T>(c) for every combination of head configuration x KV
/// storage x head dim (`dims`) x mask x ALiBi x each of `kinds`, in nested loops. Each
/// combination draws its own batch (1 or 2 sequences) of odd lengths from a generator seeded by
/// `seed` and its index: kv_len in 1 .. 31, or 1 .. 67 for one sequence in four (from 3 with a
/// prefix), and q_len = kv_len, an odd q_len < kv_len, or 1; long decode: one sequence of
/// 1025 .. 2049 keys (fewer than 4 sequence x kv head units, so even one thread splits it),
/// causal mask only.
template <class F>
void for_each_combination(std::span<const queries> kinds, std::uint64_t seed, F&& f,
                          std::span<const index_t> dims = all_head_dims) {
    std::uint64_t index = 0;
    for (const heads h : all_heads)
        for (const storage st : all_storage)
            for (const index_t d : dims)
                for (const attn::mask mask : {attn::mask::causal, attn::mask::bidirectional})
                    for (const bool alibi : {false, true})
                        for (const queries kind : kinds) {
                            // Decode sees the whole cache whatever the mask; the short decode
                            // product checks both masks, the long one only the default.
                            if (kind == queries::long_decode && mask != attn::mask::causal) continue;
                            combination c;
                            c.head = h, c.store = st, c.d = d, c.mask = mask, c.alibi = alibi, c.kind = kind;
                            c.seed = seed + 1000 * index++;
                            switch (h) {
                                case heads::mha: c.n_q = 3, c.n_kv = 3; break;
                                case heads::gqa2: c.n_q = 4, c.n_kv = 2; break;
                                case heads::gqa4: c.n_q = 8, c.n_kv = 2; break;
                                case heads::gqa8: c.n_q = 16, c.n_kv = 2; break;
                                case heads::mqa: c.n_q = 10, c.n_kv = 1; break;
                            }
                            c.group = c.n_q / c.n_kv;
                            std::mt19937_64 g(c.seed);
                            const index_t batch =
                                kind == queries::long_decode ? 1 : 1 + static_cast<index_t>(g() % 2);
                            for (index_t b = 0; b < batch && kind == queries::long_decode; ++b) {
                                c.kv_lens.push_back(odd_in(g, 1025, 2049));
                                c.q_lens.push_back(1);
                            }
                            for (index_t b = 0; b < batch && kind != queries::long_decode; ++b) {
                                // Mostly short (the product is large); one in four up to 67,
                                // past one 64-token tile.
                                const index_t top = g() % 4 == 0 ? 67 : 31;
                                const index_t kl = odd_in(g, kind == queries::prefix ? 3 : 1, top);
                                c.kv_lens.push_back(kl);
                                c.q_lens.push_back(kind == queries::full ? kl
                                                   : kind == queries::prefix ? odd_in(g, 1, kl - 2)
                                                                             : 1);
                            }
                            auto with_t = [&]<class L>() {
                                switch (st) {
                                    case storage::f32: f.template operator()<L, float>(c); break;
                                    case storage::bf16: f.template operator()<L, bf16>(c); break;
                                    case storage::f16: f.template operator()<L, fp16>(c); break;
                                }
                            };
                            switch (h) {
                                case heads::mha: with_t.template operator()<attn::mha>(); break;
                                case heads::mqa: with_t.template operator()<attn::mqa>(); break;
                                default: with_t.template operator()<attn::gqa>(); break;
                            }
                        }
}

/// The problem of a combination: its lengths, heads and dim, K/V stored as T.
template <class T>
attn_problem<T> make_problem(const combination& c) {
    return attn_problem<T>(c.q_lens.size(), c.q_lens, c.kv_lens, c.n_q, c.n_kv, c.d, c.seed);
}

// Bars of the product, about ten times the largest error measured over all its combinations
// (tensor and paged K/V alike; release build on AVX-512, and the -O1 ASan build). K/V are
// compared as stored, so the storage type changes the inputs, not the arithmetic: f32, bf16
// and f16 K/V measure the same within noise and share one bar. The largest errors come with
// d = 256 (float dot products of 256 terms).
inline constexpr double reference_tol = 1.5e-6;  // measured 1.6e-7 (the output's rounding to float)
// measured f32 2.1e-6, bf16 3.3e-6, f16 2.7e-6; ASan build: 2.5e-6, 3.6e-6, 2.7e-6
inline constexpr double flash_prefill_tol = 3e-5;
// measured f32 6.9e-7, bf16 6.4e-7, f16 7.2e-7 (long contexts: at most 4.3e-7); ASan: 7.3e-7
inline constexpr double flash_decode_tol = 7e-6;

/// Runs every kernel over `kv` (a kv_view holding p's K/V: a tensor or a cache) and checks each
/// against the oracle. Prefill (q_len = kv_len or < kv_len): reference (float32 K/V only: it
/// reads 16-bit K/V through the same to_float, and in double it is the slowest part),
/// flash<64, 64> (the default; one or two tiles at these lengths) and flash<16, 8> (many query
/// and key tiles, so masking and offsets cross tile edges). Decode: reference and flash. Every
/// output starts as 12345 so that a row left unwritten fails.
template <attn::head_layout L, class T, attn::kv_view KV>
void check_kernels(const combination& c, const attn_problem<T>& p, const KV& kv) {
    const auto slopes = pos::alibi_slopes(c.n_q);
    attn::options opt;
    opt.mask = c.mask;  // decode sees the whole cache whatever the mask
    if (c.alibi) opt.alibi_slopes = slopes;
    // One thread: thousands of tiny parallel regions cost far more than their arithmetic when
    // the cores are shared (ctest -j, a loaded machine: measured 10x). Results do not depend on
    // the thread count ("flash results do not depend on the thread count" checks it).
    opt.threads = 1;
    const auto want = oracle_attention(p, c.mask, opt.alibi_slopes);
    if (c.kind == queries::full || c.kind == queries::prefix) {
        auto o = p.out();
        if constexpr (std::is_same_v<T, float>) {
            attn::reference::prefill<L>(p.qv(), kv, p.ov(o), opt, p.q_lens);
            INFO("reference::prefill");
            CHECK(max_abs_diff(o, want) <= reference_tol);
            o = p.out();
        }
        attn::flash<64, 64>::prefill<L>(p.qv(), kv, p.ov(o), opt, p.q_lens);
        {
            INFO("flash<64, 64>::prefill");
            CHECK(max_abs_diff(o, want) <= flash_prefill_tol);
        }
        o = p.out();
        attn::flash<16, 8>::prefill<L>(p.qv(), kv, p.ov(o), opt, p.q_lens);
        INFO("flash<16, 8>::prefill");
        CHECK(max_abs_diff(o, want) <= flash_prefill_tol);
    } else {
        const tensor_view<const float, 3> q(p.q.data(), {p.batch, p.n_q, p.d});  // q_seq = 1
        std::vector<float> o(want.size(), 12345.0f);
        const tensor_view<float, 3> ov(o.data(), {p.batch, p.n_q, p.d});
        attn::reference::decode<L>(q, kv, ov, opt);
        {
            INFO("reference::decode");
            CHECK(max_abs_diff(o, want) <= reference_tol);
        }
        std::fill(o.begin(), o.end(), 12345.0f);
        attn::flash<64, 64>::decode<L>(q, kv, ov, opt);
        INFO("flash<64, 64>::decode");
        CHECK(max_abs_diff(o, want) <= flash_decode_tol);
    }
}

}  // namespace kite::test
