#pragma once
/// @file kite/quant/ggml_a8.hpp
/// ggml_a8_weights: Q4_0, Q4_1 and Q8_0 weights repacked losslessly at load for integer dot
/// products with activations rounded to int8 — what llama.cpp does for these formats — through
/// AVX-512 VNNI (vpdpbusd: 64 multiply-adds per instruction). An opt-in speed / precision trade:
/// kite::quant::ggml_weights (float activations, the default) is the one that matches
/// transformers to 1e-4; on SmolLM2-135M this format's logits are within about 2 of transformers'
/// and its argmax agrees at 96% of positions (tests/model/test_gguf_smollm2.cpp measures both).
///
///   auto w = kite::quant::ggml_a8_weights(float_path_weights);     // repack (same values)
///   kite::quant::gemv(w, x, y);                                      // x rounded to int8 per 32
///
/// Activations: each block of 32 values of x is rounded to int8 with its own scale
/// dx = max|x| / 127 (round half to even); the products with the integer weight levels are
/// exact in int32, then scaled: y = sum_b d_b dx_b sum_i q_i qx_i, plus Q4_1's offsets
/// sum_b m_b dx_b sum_i qx_i (Q4_0 multiplies its unsigned levels q + 8 and subtracts
/// 8 sum_b d_b dx_b sum_i qx_i; Q8_0's signed levels go in as |q| against qx with q's sign).
/// F32, F16 and BF16 rows keep float activations (ggml_weights' kernel).
///
/// Repacked layout (rows of one segment): codes [rows][pairs][32 or 64] — a pair of Q4 blocks is
/// 32 bytes whose low nibbles are the first block's 32 levels and high nibbles the second's; a
/// pair of Q8_0 blocks is their 64 int8 levels — and the fp16 scales d (and Q4_1's offsets m)
/// [rows][blocks rounded up to 16], as the file stored them. A row with an odd number of blocks
/// gets a zero block (d = 0). dequantize() and decode_row() give exactly ggml's values.
///
/// Arithmetic is one sequence per (row, token), so results do not depend on the batch or the
/// thread count. Kernels need AVX-512 F/BW/VNNI and F16C; elsewhere a portable twin with the
/// same integer arithmetic runs. Thread safety: immutable after construction.

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
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/ggml.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__)
#include <immintrin.h>
#define KITE_GGML_A8_VNNI 1
#else
#define KITE_GGML_A8_VNNI 0
#endif

KITE_GCC12_AVX512_UNINIT_BEGIN  // _mm512_reduce_add_ps; see kite/core/diagnostics.hpp

namespace kite::quant {

/// Q4_0 / Q4_1 / Q8_0 weights repacked for int8-activation dot products (see the file comment);
/// F32 / F16 / BF16 segments are kept as they are.
class ggml_a8_weights {
public:
    struct segment {
        ggml::type type = ggml::type::f32;
        index_t rows = 0;
        index_t blocks = 0;        // blocks of 32 per row (before padding)
        index_t pairs = 0;         // (blocks + 1) / 2
        index_t scale_stride = 0;  // blocks rounded up to 16
        std::size_t code_bytes = 0;  // per row: pairs * (32 | 64)
        aligned_buffer<std::uint8_t> codes;     // [rows][code_bytes]
        aligned_buffer<std::uint16_t> d, m;     // [rows][scale_stride] fp16 (m: Q4_1 only)
        ggml_weights plain;                     // float-type rows, or empty
    };

    ggml_a8_weights() = default;
    /// Repacks `w` (values unchanged).
    explicit ggml_a8_weights(const ggml_weights& w) : rows_(w.rows()), cols_(w.cols()) {
        for (const auto& s : w.segments()) {
            auto seg = std::make_shared<segment>();
            seg->type = s.type;
            seg->rows = s.rows;
            if (s.type == ggml::type::q4_0 || s.type == ggml::type::q4_1 || s.type == ggml::type::q8_0) {
                repack(s, *seg);
            } else {
                seg->plain = slice(w, s);
            }
            segs_.push_back(std::move(seg));
        }
    }
    ggml_a8_weights(ggml_a8_weights&&) noexcept = default;
    ggml_a8_weights& operator=(ggml_a8_weights&&) noexcept = default;
    ggml_a8_weights(const ggml_a8_weights&) = default;
    ggml_a8_weights& operator=(const ggml_a8_weights&) = default;
    /// A copy sharing the (immutable) storage.
    ggml_a8_weights clone() const { return *this; }

    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    std::size_t bytes() const noexcept {
        std::size_t b = 0;
        for (const auto& s : segs_)
            b += s->codes.size_bytes() + s->d.size_bytes() + s->m.size_bytes() + s->plain.bytes();
        return b;
    }
    const std::vector<std::shared_ptr<const segment>>& segments() const noexcept { return segs_; }

    /// out [cols] = row r, exactly ggml's values.
    void decode_row(index_t r, float* out) const {
        for (const auto& s : segs_) {
            if (r >= s->rows) {
                r -= s->rows;
                continue;
            }
            if (!s->plain.segments().empty() || s->rows == 0) return s->plain.decode_row(r, out);
            const std::uint8_t* c = s->codes.data() + r * s->code_bytes;
            const std::uint16_t* d = s->d.data() + r * s->scale_stride;
            for (index_t b = 0; b < s->blocks; ++b) {
                const float db = kite::detail::fp16_bits_to_float(d[b]);
                const index_t p = b / 2, h = b % 2;
                for (index_t i = 0; i < 32; ++i) {
                    float v;
                    if (s->type == ggml::type::q8_0) {
                        v = static_cast<float>(static_cast<std::int8_t>(c[64 * p + 32 * h + i])) * db;
                    } else {
                        const int q = (c[32 * p + i] >> (4 * h)) & 15;
                        v = s->type == ggml::type::q4_0 ? static_cast<float>(q - 8) * db
                                                        : static_cast<float>(q) * db +
                                                              kite::detail::fp16_bits_to_float(s->m[r * s->scale_stride + b]);
                    }
                    out[32 * b + i] = v;
                }
            }
            return;
        }
        kite::detail::raise<invalid_argument>("ggml_a8_weights::decode_row: row out of range");
    }
    float value(index_t r, index_t c) const {
        std::vector<float> row(cols_);
        decode_row(r, row.data());
        return row[c];
    }

private:
    static ggml_weights slice(const ggml_weights& w, const ggml_weights::segment& s) {
        return ggml_weights(s.type, std::span<const std::byte>(s.data, s.rows * s.row_bytes), s.rows, w.cols(),
                            std::shared_ptr<const void>(std::make_shared<ggml_weights>(w)));
    }

    void repack(const ggml_weights::segment& s, segment& o) {
        const bool q8 = s.type == ggml::type::q8_0;
        o.blocks = cols_ / 32;
        o.pairs = (o.blocks + 1) / 2;
        o.scale_stride = (o.blocks + 15) / 16 * 16;
        o.code_bytes = o.pairs * (q8 ? 64 : 32);
        o.codes = aligned_buffer<std::uint8_t>(s.rows * o.code_bytes);  // zero: padding blocks
        o.d = aligned_buffer<std::uint16_t>(s.rows * o.scale_stride);
        if (s.type == ggml::type::q4_1) o.m = aligned_buffer<std::uint16_t>(s.rows * o.scale_stride);
        const std::size_t bb = ggml::info(s.type).block_bytes;
        const std::size_t qoff = s.type == ggml::type::q4_1 ? 4 : 2;
        for (index_t r = 0; r < s.rows; ++r) {
            const auto* src = reinterpret_cast<const std::uint8_t*>(s.data) + r * s.row_bytes;
            std::uint8_t* c = o.codes.data() + r * o.code_bytes;
            for (index_t b = 0; b < o.blocks; ++b) {
                const std::uint8_t* blk = src + b * bb;
                std::memcpy(o.d.data() + r * o.scale_stride + b, blk, 2);
                if (s.type == ggml::type::q4_1) std::memcpy(o.m.data() + r * o.scale_stride + b, blk + 2, 2);
                const index_t p = b / 2, h = b % 2;
                if (q8) {
                    std::memcpy(c + 64 * p + 32 * h, blk + 2, 32);
                } else {
                    for (int j = 0; j < 16; ++j) {  // level i of the block into byte i of the pair
                        const std::uint8_t lo = blk[qoff + j] & 15, hi = blk[qoff + j] >> 4;
                        c[32 * p + j] |= static_cast<std::uint8_t>(lo << (4 * h));
                        c[32 * p + 16 + j] |= static_cast<std::uint8_t>(hi << (4 * h));
                    }
                }
            }
        }
    }

    index_t rows_ = 0, cols_ = 0;
    std::vector<std::shared_ptr<const segment>> segs_;
};

namespace detail {

/// Token t's activations rounded to int8 per block of 32 (padded to whole pairs with zeros):
/// q [pairs * 64] int8, dx2 [pairs * 16] (each pair's two scales, each repeated 8 times: the
/// lanes of one vpdpbusd result), sx [blocks rounded to 16] = dx_b sum_i q_i.
struct a8_activations {
    const std::int8_t* q;
    const float* dx2;
    const float* sx;
};

inline void a8_quantize(const float* x, index_t blocks, std::int8_t* q, float* dx2, float* sx, index_t sx_stride) noexcept {
    const index_t pairs = (blocks + 1) / 2;
    for (index_t b = 0; b < 2 * pairs; ++b) {
        float dx = 0.0f;
        int isum = 0;
        if (b < blocks) {
            float amax = 0.0f;
            for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[32 * b + i]));
            dx = amax / 127.0f;
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int i = 0; i < 32; ++i) {
                const int v = static_cast<int>(std::nearbyint(x[32 * b + i] * inv));
                q[32 * b + i] = static_cast<std::int8_t>(v);
                isum += v;
            }
        } else {
            std::memset(q + 32 * b, 0, 32);
        }
        for (int l = 0; l < 8; ++l) dx2[16 * (b / 2) + 8 * (b % 2) + l] = dx;
        if (b < sx_stride) sx[b] = dx * static_cast<float>(isum);
    }
    for (index_t b = 2 * pairs; b < sx_stride; ++b) sx[b] = 0.0f;
}

/// sum_b fp16(v[b]) * sx[b] over n blocks (n a multiple of 16), in 16-lane chunks.
/// (The AVX-512 kernel folds these sums into its main loop.)
inline float a8_offset_dot(const std::uint16_t* v, const float* sx, index_t n) noexcept {
    float lanes[16] = {};
    for (index_t b = 0; b < n; b += 16)
        for (int l = 0; l < 16; ++l) lanes[l] += kite::detail::fp16_bits_to_float(v[b + l]) * sx[b + l];
    float s = 0;
    for (int l = 0; l < 16; ++l) s += lanes[l];
    return s;
}

/// out[t] for NT tokens of one repacked row (see the file comment).
template <ggml::type T, int NT>
KITE_FORCE_INLINE void a8_row_dot(const ggml_a8_weights::segment& s, index_t r, const a8_activations* a,
                                  float* out) noexcept {
    constexpr bool q8 = T == ggml::type::q8_0;
    const std::uint8_t* c = s.codes.data() + r * s.code_bytes;
    const std::uint16_t* d = s.d.data() + r * s.scale_stride;
#if KITE_GGML_A8_VNNI
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const __m512i lanes01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 d16 = _mm512_setzero_ps();
    for (index_t p = 0; p < s.pairs; ++p) {
        if (p % 8 == 0) {
            d16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + 2 * p)));
            // The offsets of the next 16 blocks (see the file comment), in the same accumulators:
            // Q4_1 adds m_b sx_b, Q4_0 subtracts 8 d_b sx_b.
            if constexpr (T == ggml::type::q4_1) {
                const std::uint16_t* m = s.m.data() + r * s.scale_stride;
                const __m512 m16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 2 * p)));
#pragma GCC unroll 8
                for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(m16, _mm512_loadu_ps(a[t].sx + 2 * p), acc[t]);
            } else if constexpr (T == ggml::type::q4_0) {
                const __m512 nd = _mm512_mul_ps(d16, _mm512_set1_ps(-8.0f));
#pragma GCC unroll 8
                for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(nd, _mm512_loadu_ps(a[t].sx + 2 * p), acc[t]);
            }
        }
        const __m512 dw = _mm512_permutexvar_ps(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(2 * (p % 8))), lanes01), d16);
        __m512i w;
        __mmask64 neg = 0;
        if constexpr (q8) {
            const __m512i v = _mm512_loadu_si512(c + 64 * p);
            neg = _mm512_movepi8_mask(v);  // levels < 0: their activations change sign
            w = _mm512_abs_epi8(v);        // -128 becomes 128 as an unsigned byte
        } else {
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 * p));
            const __m256i mask = _mm256_set1_epi8(15);
            w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(raw, mask)),
                                   _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask), 1);
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
            __m512i xq = _mm512_loadu_si512(a[t].q + 64 * p);
            if constexpr (q8) xq = _mm512_mask_sub_epi8(xq, neg, _mm512_setzero_si512(), xq);
            const __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xq);
            const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_loadu_ps(a[t].dx2 + 16 * p));
            acc[t] = _mm512_fmadd_ps(f, dw, acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
#else
    float acc[NT][16] = {};
    for (index_t p = 0; p < s.pairs; ++p) {
        for (int h = 0; h < 2; ++h) {
            const float dw = kite::detail::fp16_bits_to_float(d[2 * p + h]);
            for (int lane = 0; lane < 8; ++lane) {
                for (int t = 0; t < NT; ++t) {
                    int isum = 0;
                    for (int i = 0; i < 4; ++i) {
                        const int k = 32 * h + 4 * lane + i;  // level k of the pair
                        const int w = q8 ? static_cast<std::int8_t>(c[64 * p + k]) : (c[32 * p + k % 32] >> (4 * h)) & 15;
                        isum += w * a[t].q[64 * p + k];
                    }
                    acc[t][8 * h + lane] += static_cast<float>(isum) * a[t].dx2[16 * p + 8 * h + lane] * dw;
                }
            }
        }
    }
    for (int t = 0; t < NT; ++t) {
        float sum = 0;
        for (int l = 0; l < 16; ++l) sum += acc[t][l];
        out[t] = sum;
    }
    // Offsets: Q4_1 adds sum_b m_b sx_b; Q4_0 subtracts the +8 of its levels.
    for (int t = 0; t < NT; ++t) {
        if constexpr (T == ggml::type::q4_1) {
            out[t] += a8_offset_dot(s.m.data() + r * s.scale_stride, a[t].sx, s.scale_stride);
        } else if constexpr (T == ggml::type::q4_0) {
            out[t] -= 8.0f * a8_offset_dot(d, a[t].sx, s.scale_stride);
        }
    }
#endif
}

template <int NT>
void a8_rows(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_activations* a, float* y,
             index_t ldy) noexcept {
    float out[NT];
    for (index_t r = r0; r < r1; ++r) {
#if KITE_GGML_A8_VNNI
        const char* ahead = reinterpret_cast<const char*>(s.codes.data() + r * s.code_bytes) + ggml_prefetch_bytes;
        const char* end = reinterpret_cast<const char*>(s.codes.data() + s.codes.size());
        for (std::size_t o = 0; o < s.code_bytes && ahead + o < end; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
#endif
        switch (s.type) {
            case ggml::type::q4_1: a8_row_dot<ggml::type::q4_1, NT>(s, r, a, out); break;
            case ggml::type::q4_0: a8_row_dot<ggml::type::q4_0, NT>(s, r, a, out); break;
            default: a8_row_dot<ggml::type::q8_0, NT>(s, r, a, out); break;
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) y[t * ldy + r] = out[t];
    }
}

inline void a8_gemm(const ggml_a8_weights& w, matrix_view<const float> X, float* Y, index_t ldy, int threads) {
    const index_t T = X.rows(), m = w.rows(), k = w.cols();
    if (T == 0 || m == 0) return;
    if (k == 0) {
        for (index_t t = 0; t < T; ++t) std::fill_n(Y + t * ldy, m, 0.0f);
        return;
    }
    // Every token's int8 activations, once per call.
    const index_t blocks = k / 32, pairs = (blocks + 1) / 2, sx_stride = (blocks + 15) / 16 * 16;
    std::int8_t* q = scratch<std::int8_t, 12>(T * pairs * 64 + 64);
    float* dx2 = scratch<float, 13>(T * pairs * 16 + 16);
    float* sx = scratch<float, 14>(T * sx_stride + 16);
    a8_activations* acts = scratch<a8_activations, 15>(T);
    for (index_t t = 0; t < T; ++t) {
        a8_quantize(X.row(t).data(), blocks, q + t * pairs * 64, dx2 + t * pairs * 16, sx + t * sx_stride, sx_stride);
        acts[t] = {q + t * pairs * 64, dx2 + t * pairs * 16, sx + t * sx_stride};
    }
    constexpr index_t chunk = 16;
    parallel_chunks(
        (m + chunk - 1) / chunk,
        [&](std::size_t c0, std::size_t c1, int) {
            const index_t r0 = c0 * chunk, r1 = std::min(m, c1 * chunk);
            index_t base = 0;
            for (const auto& sp : w.segments()) {
                const auto& s = *sp;
                const index_t a = std::max(r0, base), e = std::min(r1, base + s.rows);
                if (a < e) {
                    if (!s.plain.segments().empty()) {
                        // Float rows: ggml_weights' kernel on this row range.
                        ggml_range(s.plain, X, Y + base, ldy, a - base, e - base);
                    } else {
                        for (index_t t0 = 0; t0 < T; t0 += ggml_max_nt) {
                            const int nt = static_cast<int>(std::min<index_t>(ggml_max_nt, T - t0));
                            float* y = Y + t0 * ldy + base;
                            const a8_activations* at = acts + t0;
                            switch (nt) {
                                case 8: a8_rows<8>(s, a - base, e - base, at, y, ldy); break;
                                case 7: a8_rows<7>(s, a - base, e - base, at, y, ldy); break;
                                case 6: a8_rows<6>(s, a - base, e - base, at, y, ldy); break;
                                case 5: a8_rows<5>(s, a - base, e - base, at, y, ldy); break;
                                case 4: a8_rows<4>(s, a - base, e - base, at, y, ldy); break;
                                case 3: a8_rows<3>(s, a - base, e - base, at, y, ldy); break;
                                case 2: a8_rows<2>(s, a - base, e - base, at, y, ldy); break;
                                default: a8_rows<1>(s, a - base, e - base, at, y, ldy); break;
                            }
                        }
                    }
                }
                base += s.rows;
            }
        },
        threads);
}

}  // namespace detail

/// y = W x with x rounded to int8 per block of 32 (see the file comment).
inline void gemv(const ggml_a8_weights& w, std::span<const float> x, std::span<float> y, int threads = 0) {
    KITE_REQUIRE(x.size() == w.cols() && y.size() == w.rows(), shape_error, "quant::gemv: x has ", x.size(),
                 " and y ", y.size(), " elements; expected in_features = ", w.cols(), " and out_features = ", w.rows());
    detail::a8_gemm(w, matrix_view<const float>(x.data(), 1, x.size()), y.data(), y.size(), threads);
}

/// Y [batch][out] = X [batch][in] W^T, each token's activations rounded to int8 (batch invariant).
inline void gemm(const ggml_a8_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    KITE_REQUIRE(X.cols() == w.cols(), shape_error, "quant::gemm: X has ", X.cols(), " columns; expected in_features = ",
                 w.cols());
    KITE_REQUIRE(Y.rows() == X.rows() && Y.cols() == w.rows(), shape_error, "quant::gemm: Y has shape ", Y.rows(), " x ",
                 Y.cols(), "; expected ", X.rows(), " x ", w.rows(), " (batch x out_features)");
    detail::a8_gemm(w, X, Y.data(), Y.stride(), threads);
}

/// The float matrix [out][in] W represents (the same as the ggml_weights it was repacked from).
inline matrix<float> dequantize(const ggml_a8_weights& w) {
    matrix<float> out(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r) w.decode_row(r, out.row(r).data());
    return out;
}

/// The weights policy of GGUF models run with int8 activations (kite::model::read_gguf, then
/// kite::model::convert_weights<ggml_a8_weights>); from float weights it makes Q8_0 and repacks.
struct ggml_blocks_a8 {
    using format = ggml_a8_weights;
    static constexpr const char* name = "ggml_blocks_a8";
    format quantize(matrix_view<const float> w) const { return format(ggml_blocks{}.quantize(w)); }
};

static_assert(weight_format<ggml_a8_weights> && data_free_method<ggml_blocks_a8>);

}  // namespace kite::quant

KITE_GCC12_AVX512_UNINIT_END
