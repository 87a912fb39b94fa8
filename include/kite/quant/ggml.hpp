#pragma once
/// @file kite/quant/ggml.hpp
/// ggml_weights: the weights of a linear layer as a GGUF file stores them (ggml blocks of F32,
/// F16, BF16, Q8_0, Q4_0 or Q4_1), multiplied as stored: no requantization, no copy (the blocks
/// are a view into the file's memory map, kept alive by the weights). A kite::quant weight
/// format like any other: dequantize, gemv and gemm found by ADL, so
/// kite::model::linear<ggml_weights> and a decoder<..., kite::quant::ggml_blocks> take it.
///
///   const auto& t = gguf.tensor("blk.0.attn_q.weight");          // Q4_1, ne {576, 576}
///   kite::quant::ggml_weights w(t.type, t.data, t.rows(), t.cols(), gguf.mapping());
///   kite::quant::gemv(w, x, y);                                   // y [576] = W x
///   auto qkv = kite::quant::ggml_weights::stack({q, k, v});       // rows of q, then k, then v
///
/// Arithmetic (one definition for every kernel, so results never depend on the batch): for each
/// output row and token, blocks of 32 weights in order; within block b the products go into
/// sixteen lanes as s = w[0..15] x[0..15]; s += w[16..31] x[16..31]; then v = d s (Q4_1:
/// v = d s + m (x[0..15] + x[16..31]); float types: v = s), with the block's scale d (and
/// offset m) applied once and integer levels converted exactly to float; v is added to one of
/// two accumulators (even and odd blocks), whose lanes are summed at the end. GEMV and GEMM run
/// this same sequence per (row, token) — GEMM decodes each block once for up to eight tokens —
/// so a token's outputs are identical whatever else shares the batch and whatever the thread
/// count (tested bit for bit). Oracle: dequantize-then-multiply in double
/// (reference::gemv / reference::gemm). Kernels: AVX-512 (F, BW, F16C) and a portable scalar
/// twin with the same order of operations.
///
/// Thread safety: immutable after construction; safe to use from many threads.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/validate.hpp"
#include "kite/quant/concepts.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/ggml_types.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__F16C__)
#include <immintrin.h>
#define KITE_GGML_AVX512 1
#else
#define KITE_GGML_AVX512 0
#endif

KITE_GCC12_AVX512_UNINIT_BEGIN  // _mm512_reduce_add_ps; see kite/core/diagnostics.hpp

namespace kite::quant {

/// Weights W [rows][cols] in ggml blocks, used as stored; see the file comment.
class ggml_weights {
public:
    /// A run of rows of one type: rows x row_bytes bytes at `data`.
    struct segment {
        ggml::type type = ggml::type::f32;
        const std::byte* data = nullptr;
        index_t rows = 0;
        std::size_t row_bytes = 0;
    };

    ggml_weights() = default;
    /// A view of `rows` rows of `cols` elements of type t at `data` (rows x row_bytes(t, cols)
    /// bytes); `keep` keeps the storage alive (a GGUF file's mapping). Types kite does not
    /// multiply as stored, and sizes that do not match, are kite::invalid_argument.
    ggml_weights(ggml::type t, std::span<const std::byte> data, index_t rows, index_t cols,
                 std::shared_ptr<const void> keep = {})
        : rows_(rows), cols_(cols) {
        KITE_REQUIRE(ggml::native(t), invalid_argument, "ggml_weights: type ", ggml::name(t),
                     " is not multiplied as stored; expected F32, F16, BF16, Q8_0, Q4_0 or Q4_1");
        KITE_REQUIRE(cols % ggml::info(t).block_elems == 0, invalid_argument, "ggml_weights: rows of ", cols,
                     " elements are not a whole number of ", ggml::name(t), " blocks");
        const std::size_t rb = ggml::row_bytes(t, cols);
        KITE_REQUIRE(data.size() == checked_mul(rows, rb, "ggml_weights: ", rows, " rows"), invalid_argument,
                     "ggml_weights: ", data.size(), " bytes for ", rows, " x ", cols, " ", ggml::name(t),
                     "; expected ", rows * rb);
        if (rows > 0) segs_.push_back({t, data.data(), rows, rb});
        if (keep) keep_.push_back(std::move(keep));
    }

    /// Rows of `parts` stacked in order (the fused q|k|v and gate|up projections of a GGUF
    /// model, whose parts keep their own types). All parts must have the same cols.
    static ggml_weights stack(std::span<const ggml_weights> parts) {
        ggml_weights out;
        KITE_REQUIRE(!parts.empty(), invalid_argument, "ggml_weights::stack: no parts");
        out.cols_ = parts[0].cols_;
        for (const auto& p : parts) {
            KITE_REQUIRE(p.cols_ == out.cols_, shape_error, "ggml_weights::stack: a part has ", p.cols_,
                         " columns; expected ", out.cols_, " like the first");
            out.rows_ += p.rows_;
            out.segs_.insert(out.segs_.end(), p.segs_.begin(), p.segs_.end());
            out.keep_.insert(out.keep_.end(), p.keep_.begin(), p.keep_.end());
        }
        return out;
    }
    static ggml_weights stack(std::initializer_list<ggml_weights> parts) {
        return stack(std::span<const ggml_weights>(parts.begin(), parts.size()));
    }

    /// Weights that own their bytes (e.g. quantized from float by kite::quant::ggml_blocks).
    static ggml_weights owning(ggml::type t, aligned_buffer<std::byte> bytes, index_t rows, index_t cols) {
        auto holder = std::make_shared<aligned_buffer<std::byte>>(std::move(bytes));
        return ggml_weights(t, holder->span(), rows, cols, holder);
    }

    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    std::size_t bytes() const noexcept {
        std::size_t b = 0;
        for (const auto& s : segs_) b += s.rows * s.row_bytes;
        return b;
    }
    const std::vector<segment>& segments() const noexcept { return segs_; }
    /// A copy sharing the (immutable) storage.
    ggml_weights clone() const { return *this; }

    /// The segment holding row r and r's index within it.
    std::pair<const segment*, index_t> locate(index_t r) const noexcept {
        for (const auto& s : segs_) {
            if (r < s.rows) return {&s, r};
            r -= s.rows;
        }
        return {nullptr, 0};
    }
    /// out [cols] = row r, exactly as ggml decodes it.
    void decode_row(index_t r, float* out) const {
        const auto [s, lr] = locate(r);
        KITE_REQUIRE(s != nullptr, invalid_argument, "ggml_weights::decode_row: row ", r, " of ", rows_);
        ggml::decode_row(s->type, s->data + lr * s->row_bytes, out, cols_);
    }
    /// W[r][c] (decodes its block).
    float value(index_t r, index_t c) const {
        const auto [s, lr] = locate(r);
        const auto ti = ggml::info(s->type);
        const index_t b = c / ti.block_elems;
        float block[32];
        ggml::decode_row(s->type, s->data + lr * s->row_bytes + b * ti.block_bytes, block, ti.block_elems);
        return block[c % ti.block_elems];
    }

private:
    index_t rows_ = 0, cols_ = 0;
    std::vector<segment> segs_;
    std::vector<std::shared_ptr<const void>> keep_;
};

namespace detail {

/// Elements per kernel block (every native type's row is a whole number of them, except F32 /
/// F16 / BF16 rows, whose tail goes through the scalar path of the same arithmetic).
inline constexpr index_t ggml_kb = 32;

KITE_FORCE_INLINE float ggml_f16(const std::uint8_t* p) noexcept {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
#if KITE_GGML_AVX512
    return _cvtsh_ss(h);  // F16C: one instruction, exact for every input
#else
    return kite::detail::fp16_bits_to_float(h);
#endif
}

#if KITE_GGML_AVX512

/// The 32 weights of block b of a row of type T, as two vectors of floats (integer levels, not
/// yet scaled), and the block's scale d (1 for float types).
template <ggml::type T>
KITE_FORCE_INLINE void ggml_load_block(const std::uint8_t* row, index_t b, __m512& lo, __m512& hi, float& d) noexcept {
    if constexpr (T == ggml::type::q8_0) {
        const std::uint8_t* p = row + 34 * b;
        d = ggml_f16(p);
        lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2))));
        hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 18))));
    } else if constexpr (T == ggml::type::q4_0 || T == ggml::type::q4_1) {
        constexpr std::size_t bytes = T == ggml::type::q4_0 ? 18 : 20;
        constexpr std::size_t qoff = T == ggml::type::q4_0 ? 2 : 4;
        const std::uint8_t* p = row + bytes * b;
        d = ggml_f16(p);
        const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + qoff)));
        __m512i l = _mm512_and_si512(w, _mm512_set1_epi32(15));
        __m512i h = _mm512_srli_epi32(w, 4);
        if constexpr (T == ggml::type::q4_0) {
            l = _mm512_sub_epi32(l, _mm512_set1_epi32(8));
            h = _mm512_sub_epi32(h, _mm512_set1_epi32(8));
        }
        lo = _mm512_cvtepi32_ps(l);
        hi = _mm512_cvtepi32_ps(h);
    } else if constexpr (T == ggml::type::f16) {
        const auto* p = row + 64 * b;
        d = 1.0f;
        lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
    } else if constexpr (T == ggml::type::bf16) {
        const auto* p = row + 64 * b;
        d = 1.0f;
        lo = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
        hi = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32))), 16));
    } else {  // f32
        const auto* p = reinterpret_cast<const float*>(row) + 32 * b;
        d = 1.0f;
        lo = _mm512_loadu_ps(p);
        hi = _mm512_loadu_ps(p + 16);
    }
}

/// v for block b of the row against token t's x: the block's contribution (file comment).
template <ggml::type T>
KITE_FORCE_INLINE __m512 ggml_block_value(__m512 lo, __m512 hi, __m512 dv, __m512 mv, const float* x) noexcept {
    const __m512 xl = _mm512_loadu_ps(x), xh = _mm512_loadu_ps(x + 16);
    __m512 s = _mm512_mul_ps(lo, xl);
    s = _mm512_fmadd_ps(hi, xh, s);
    if constexpr (T == ggml::type::q4_1) {
        return _mm512_fmadd_ps(dv, s, _mm512_mul_ps(mv, _mm512_add_ps(xl, xh)));  // d q.x + m sum x
    } else if constexpr (T == ggml::type::q8_0 || T == ggml::type::q4_0) {
        return _mm512_mul_ps(dv, s);
    } else {
        (void)dv, (void)mv;
        return s;
    }
}

/// Block b's weights, scale and offset as vectors.
template <ggml::type T>
KITE_FORCE_INLINE void ggml_block(const std::uint8_t* row, index_t b, __m512& lo, __m512& hi, __m512& dv,
                                  __m512& mv) noexcept {
    float d;
    ggml_load_block<T>(row, b, lo, hi, d);
    dv = _mm512_set1_ps(d);
    if constexpr (T == ggml::type::q4_1) {
        mv = _mm512_set1_ps(ggml_f16(row + 20 * b + 2));
    } else {
        mv = _mm512_setzero_ps();
    }
}

/// out[t] = row . x[t] for NT tokens (see the file comment for the order of operations).
template <ggml::type T, int NT>
KITE_FORCE_INLINE void ggml_row_dot(const std::uint8_t* row, index_t k, const float* const* x, float* out) noexcept {
    const index_t nb = k / ggml_kb;
    // Two accumulators per token, for even and odd blocks: the adds of consecutive blocks
    // overlap instead of waiting on one another.
    __m512 even[NT], odd[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) even[t] = odd[t] = _mm512_setzero_ps();
    index_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512 lo0, hi0, d0, m0, lo1, hi1, d1, m1;
        ggml_block<T>(row, b, lo0, hi0, d0, m0);
        ggml_block<T>(row, b + 1, lo1, hi1, d1, m1);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
            even[t] = _mm512_add_ps(even[t], ggml_block_value<T>(lo0, hi0, d0, m0, x[t] + 32 * b));
            odd[t] = _mm512_add_ps(odd[t], ggml_block_value<T>(lo1, hi1, d1, m1, x[t] + 32 * b + 32));
        }
    }
    if (b < nb) {
        __m512 lo0, hi0, d0, m0;
        ggml_block<T>(row, b, lo0, hi0, d0, m0);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) even[t] = _mm512_add_ps(even[t], ggml_block_value<T>(lo0, hi0, d0, m0, x[t] + 32 * b));
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(even[t], odd[t]));
}

#else  // the portable twin: the same order of operations, one lane at a time

template <ggml::type T, int NT>
inline void ggml_row_dot(const std::uint8_t* row, index_t k, const float* const* x, float* out) noexcept {
    constexpr bool scaled = T == ggml::type::q8_0 || T == ggml::type::q4_0 || T == ggml::type::q4_1;
    const index_t nb = k / ggml_kb;
    float acc[2][NT][16] = {};
    float w[32];
    for (index_t b = 0; b < nb; ++b) {
        const auto bytes = ggml::info(T).block_bytes * (ggml::info(T).block_elems == 1 ? 32 : 1);
        float d = 1.0f, m = 0.0f;
        const std::uint8_t* p = row + b * bytes;
        if constexpr (T == ggml::type::q8_0) {
            d = ggml_f16(p);
            for (int i = 0; i < 32; ++i) w[i] = static_cast<float>(static_cast<std::int8_t>(p[2 + i]));
        } else if constexpr (T == ggml::type::q4_0 || T == ggml::type::q4_1) {
            const int off = T == ggml::type::q4_0 ? 8 : 0, q = T == ggml::type::q4_0 ? 2 : 4;
            d = ggml_f16(p);
            if constexpr (T == ggml::type::q4_1) m = ggml_f16(p + 2);
            for (int i = 0; i < 16; ++i) {
                w[i] = static_cast<float>((p[q + i] & 15) - off);
                w[16 + i] = static_cast<float>((p[q + i] >> 4) - off);
            }
        } else {
            ggml::decode_row(T, reinterpret_cast<const std::byte*>(p), w, 32);
        }
        for (int t = 0; t < NT; ++t)
            for (int i = 0; i < 16; ++i) {
                const float xl = x[t][32 * b + i], xh = x[t][32 * b + 16 + i];
                const float s = w[16 + i] * xh + w[i] * xl;
                float v = s;
                if constexpr (T == ggml::type::q4_1) {
                    v = d * s + m * (xl + xh);
                } else if constexpr (scaled) {
                    v = d * s;
                }
                acc[b & 1][t][i] += v;
            }
    }
    for (int t = 0; t < NT; ++t) {
        float s = 0;
        for (int i = 0; i < 16; ++i) s += acc[0][t][i] + acc[1][t][i];
        out[t] = s;
    }
}

#endif

/// Adds the products of the columns past the last whole kernel block (F32 / F16 / BF16 rows of
/// any length), element by element in order.
inline void ggml_row_tail(ggml::type t, const std::uint8_t* row, index_t k, const float* const* x, int nt,
                          float* out) noexcept {
    const index_t k0 = k / ggml_kb * ggml_kb;
    if (k0 == k) return;
    float w[ggml_kb];
    const std::size_t es = ggml::info(t).block_bytes;
    ggml::decode_row(t, reinterpret_cast<const std::byte*>(row + k0 * es), w, k - k0);
    for (int j = 0; j < nt; ++j)
        for (index_t i = k0; i < k; ++i) out[j] += w[i - k0] * x[j][i];
}

/// Bytes ahead of the row being multiplied that the kernels prefetch: the hardware prefetchers
/// stop at every 4 KiB page of the file mapping, and a decoding token streams every weight.
inline constexpr std::size_t ggml_prefetch_bytes = 2048;

template <ggml::type T, int NT>
void ggml_rows(const ggml_weights::segment& s, index_t r0, index_t r1, index_t k, const float* const* x, float* y,
               index_t ldy) noexcept {
    float out[NT];
    const auto* base = reinterpret_cast<const char*>(s.data);
    const char* end = base + s.rows * s.row_bytes;
    for (index_t r = r0; r < r1; ++r) {
        const auto* row = reinterpret_cast<const std::uint8_t*>(s.data) + r * s.row_bytes;
#if KITE_GGML_AVX512
        // The lines of the row ggml_prefetch_bytes ahead (within this segment).
        const char* ahead = reinterpret_cast<const char*>(row) + ggml_prefetch_bytes;
        for (std::size_t o = 0; o < s.row_bytes && ahead + o < end; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
#else
        (void)end;
#endif
        ggml_row_dot<T, NT>(row, k, x, out);
        if constexpr (T == ggml::type::f32 || T == ggml::type::f16 || T == ggml::type::bf16)
            ggml_row_tail(T, row, k, x, NT, out);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) y[t * ldy + r] = out[t];
    }
}

template <int NT>
void ggml_rows_any(const ggml_weights::segment& s, index_t r0, index_t r1, index_t k, const float* const* x, float* y,
                   index_t ldy) noexcept {
    switch (s.type) {
        case ggml::type::q4_1: return ggml_rows<ggml::type::q4_1, NT>(s, r0, r1, k, x, y, ldy);
        case ggml::type::q4_0: return ggml_rows<ggml::type::q4_0, NT>(s, r0, r1, k, x, y, ldy);
        case ggml::type::q8_0: return ggml_rows<ggml::type::q8_0, NT>(s, r0, r1, k, x, y, ldy);
        case ggml::type::f16: return ggml_rows<ggml::type::f16, NT>(s, r0, r1, k, x, y, ldy);
        case ggml::type::bf16: return ggml_rows<ggml::type::bf16, NT>(s, r0, r1, k, x, y, ldy);
        default: return ggml_rows<ggml::type::f32, NT>(s, r0, r1, k, x, y, ldy);
    }
}

/// Tokens per pass: each block is decoded once for this many tokens.
inline constexpr int ggml_max_nt = 8;

/// Y [T][rows] (rows ldy apart) = X [T][k] W^T for the rows [r0, r1) of w (over its segments).
inline void ggml_range(const ggml_weights& w, matrix_view<const float> X, float* Y, index_t ldy, index_t r0,
                       index_t r1) noexcept {
    const index_t T = X.rows(), k = w.cols();
    index_t base = 0;  // first row of the current segment
    for (const auto& s : w.segments()) {
        const index_t a = std::max(r0, base), e = std::min(r1, base + s.rows);
        if (a < e) {
            for (index_t t0 = 0; t0 < T; t0 += ggml_max_nt) {
                const int nt = static_cast<int>(std::min<index_t>(ggml_max_nt, T - t0));
                const float* xp[ggml_max_nt];
                for (int j = 0; j < nt; ++j) xp[j] = X.row(t0 + j).data();
                float* y = Y + t0 * ldy + base;  // y[t * ldy + local row]
                switch (nt) {
                    case 8: ggml_rows_any<8>(s, a - base, e - base, k, xp, y, ldy); break;
                    case 7: ggml_rows_any<7>(s, a - base, e - base, k, xp, y, ldy); break;
                    case 6: ggml_rows_any<6>(s, a - base, e - base, k, xp, y, ldy); break;
                    case 5: ggml_rows_any<5>(s, a - base, e - base, k, xp, y, ldy); break;
                    case 4: ggml_rows_any<4>(s, a - base, e - base, k, xp, y, ldy); break;
                    case 3: ggml_rows_any<3>(s, a - base, e - base, k, xp, y, ldy); break;
                    case 2: ggml_rows_any<2>(s, a - base, e - base, k, xp, y, ldy); break;
                    default: ggml_rows_any<1>(s, a - base, e - base, k, xp, y, ldy); break;
                }
            }
        }
        base += s.rows;
    }
}

/// The shape checks of every ggml format's gemv and gemm (ggml_weights, ggml_a8_weights,
/// ggml_panel_weights): a kite::shape_error naming the sizes and what was expected.
inline void ggml_check_gemv(index_t rows, index_t cols, std::size_t x, std::size_t y) {
    KITE_REQUIRE(x == cols && y == rows, shape_error, "quant::gemv: x has ", x, " and y ", y,
                 " elements; expected in_features = ", cols, " and out_features = ", rows);
}
inline void ggml_check_gemm(index_t rows, index_t cols, matrix_view<const float> X, matrix_view<float> Y) {
    KITE_REQUIRE(X.cols() == cols, shape_error, "quant::gemm: X has ", X.cols(), " columns; expected in_features = ", cols);
    KITE_REQUIRE(Y.rows() == X.rows() && Y.cols() == rows, shape_error, "quant::gemm: Y has shape ", Y.rows(), " x ",
                 Y.cols(), "; expected ", X.rows(), " x ", rows, " (batch x out_features)");
}

/// Products with nothing to multiply: no token or no row (nothing to write), or rows of no
/// columns (zeros). True when Y is done.
inline bool ggml_trivial_product(index_t T, index_t m, index_t k, float* Y, index_t ldy) noexcept {
    if (T == 0 || m == 0) return true;
    if (k != 0) return false;
    for (index_t t = 0; t < T; ++t) std::fill_n(Y + t * ldy, m, 0.0f);
    return true;
}

inline void ggml_gemm(const ggml_weights& w, matrix_view<const float> X, float* Y, index_t ldy, int threads) {
    const index_t T = X.rows(), m = w.rows(), k = w.cols();
    if (ggml_trivial_product(T, m, k, Y, ldy)) return;
    // Threads split the rows in chunks of 16 (a row's arithmetic does not depend on the split).
    constexpr index_t chunk = 16;
    parallel_chunks(
        (m + chunk - 1) / chunk,
        [&](std::size_t c0, std::size_t c1, int) {
            ggml_range(w, X, Y, ldy, c0 * chunk, std::min(m, c1 * chunk));
        },
        threads);
}

}  // namespace detail

/// y = W x for W [out][in] in ggml blocks, x [in], y [out]; threads over rows.
inline void gemv(const ggml_weights& w, std::span<const float> x, std::span<float> y, int threads = 0) {
    detail::ggml_check_gemv(w.rows(), w.cols(), x.size(), y.size());
    detail::ggml_gemm(w, matrix_view<const float>(x.data(), 1, x.size()), y.data(), y.size(), threads);
}

/// Y [batch][out] = X [batch][in] W^T; each token's outputs equal its gemv (batch invariant).
inline void gemm(const ggml_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    detail::ggml_check_gemm(w.rows(), w.cols(), X, Y);
    detail::ggml_gemm(w, X, Y.data(), Y.stride(), threads);
}

/// The float matrix [out][in] W represents (exactly ggml's decoding).
inline matrix<float> dequantize(const ggml_weights& w) {
    matrix<float> out(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r) w.decode_row(r, out.row(r).data());
    return out;
}

/// The weights policy of models read from GGUF files (kite::model::read_gguf): every tensor in
/// its own ggml type, as stored. As a data-free method it quantizes float weights to Q8_0 the
/// way ggml's quantize_row_q8_0 does (per block of 32: d = max|w| / 127, stored as fp16;
/// q = round(w / d), halves away from zero), so a GGUF decoder type also takes a float
/// checkpoint. Columns must be a multiple of 32 for that.
struct ggml_blocks {
    using format = ggml_weights;
    static constexpr const char* name = "ggml_blocks";
    format quantize(matrix_view<const float> w) const {
        require_finite(w, "ggml_blocks: W");
        KITE_REQUIRE(w.cols() % 32 == 0, shape_error, "ggml_blocks: ", w.cols(),
                     " columns; expected a multiple of 32 (Q8_0 blocks)");
        const std::size_t rb = ggml::row_bytes(ggml::type::q8_0, w.cols());
        aligned_buffer<std::byte> bytes(w.rows() * rb);
        for (index_t r = 0; r < w.rows(); ++r)
            for (index_t b = 0; b < w.cols() / 32; ++b) {
                const float* src = w.row(r).data() + 32 * b;
                auto* dst = reinterpret_cast<std::uint8_t*>(bytes.data() + r * rb + 34 * b);
                float amax = 0;
                for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(src[i]));
                const float d = amax / 127.0f;
                const std::uint16_t h = kite::detail::float_to_fp16_bits(d);
                std::memcpy(dst, &h, 2);
                const float id = d != 0.0f ? 1.0f / d : 0.0f;
                for (int i = 0; i < 32; ++i)
                    dst[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(src[i] * id)));
            }
        return ggml_weights::owning(ggml::type::q8_0, std::move(bytes), w.rows(), w.cols());
    }
};

static_assert(weight_format<ggml_weights> && data_free_method<ggml_blocks>);

}  // namespace kite::quant

KITE_GCC12_AVX512_UNINIT_END
