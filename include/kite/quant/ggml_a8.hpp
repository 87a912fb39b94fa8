#pragma once
/// @file kite/quant/ggml_a8.hpp
/// ggml_a8_weights: Q4_0, Q4_1 and Q8_0 weights repacked losslessly at load for integer dot
/// products with activations rounded to int8 — what llama.cpp does for these formats — through
/// AVX-512 VNNI (vpdpbusd: 64 multiply-adds per instruction). An opt-in speed / precision trade:
/// kite::quant::ggml_weights (float activations, the default) is the one that matches
/// transformers to 1e-4; on SmolLM2-135M this format's logits are within about 2 of transformers'
/// and its argmax agrees at 97% of positions (tests/model/test_gguf_smollm2.cpp measures both).
///
///   auto w = kite::quant::ggml_a8_weights(float_path_weights);     // repack (same values)
///   kite::quant::gemv(w, x, y);                                      // x rounded to int8 per 32
///
/// Activations: each block of 32 values of x is rounded to int8 with its own scale
/// dx = max|x| / 127 (round half to even). Per (row, token) and block b the products of the
/// unsigned weight codes u with the int8 activations are summed exactly in int32 (vpdpbusd),
/// the codes' offset is taken off exactly (Q4_0: u = q + 8, minus 8 sum_i qx_i; Q8_0:
/// u = q + 128, minus 128 sum_i qx_i), and then y = sum_b d_b (dx_b isum_b) (+ Q4_1's
/// m_b dx_b sum_i qx_i), accumulated in float over 16 lanes (lane = block mod 16) and summed at
/// the end. F32, F16 and BF16 rows keep float activations (ggml_weights' kernel).
///
/// Repacked layout (rows of one segment), in groups of 16 blocks: a group's codes are 8 slices
/// of 64 bytes, slice s holding elements 4s .. 4s+3 of each of the 16 blocks (byte 4 b + e), so
/// one vpdpbusd per slice adds 4 products into each block's lane and a group's 8 slices give
/// every block's whole sum with no horizontal reduction. Q4 codes are nibbles: 4 chunks of 64
/// bytes per group, chunk j holding slice 2j in its low and slice 2j+1 in its high nibbles;
/// Q8_0 codes are bytes q + 128. The fp16 scales d (and Q4_1's offsets m) are [rows][blocks
/// rounded up to 16], as the file stored them; padding blocks have d = 0. A last group of
/// t < 16 blocks (SmolLM2's 576 columns are 16 + 2 blocks) stores slices of 4 t bytes (no
/// padding: 16 bytes per Q4 block as in the file), read with masked loads, on 256-bit vectors
/// when t <= 8.
/// dequantize() and decode_row() give exactly ggml's values.
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

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && defined(__F16C__)
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
        index_t groups = 0;        // (blocks + 15) / 16
        index_t scale_stride = 0;  // groups * 16
        index_t tail = 0;          // blocks % 16: blocks of the last group when it is partial
        bool half_tail = false;    // 0 < tail <= 8: the last group runs on 256-bit vectors
        std::size_t code_bytes = 0;  // per row
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
                for (index_t i = 0; i < 32; ++i) {
                    const int q = code(*s, c, b, i);
                    float v;
                    if (s->type == ggml::type::q8_0) {
                        v = static_cast<float>(q - 128) * db;
                    } else if (s->type == ggml::type::q4_0) {
                        v = static_cast<float>(q - 8) * db;
                    } else {
                        v = static_cast<float>(q) * db + kite::detail::fp16_bits_to_float(s->m[r * s->scale_stride + b]);
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

    /// The unsigned code of element i of block b in a repacked row `c` (see the layout).
    static int code(const segment& s, const std::uint8_t* c, index_t b, index_t i) noexcept {
        const std::uint8_t byte = c[code_offset(s, b, i)];
        if (s.type == ggml::type::q8_0) return byte;
        return (i / 4) % 2 ? byte >> 4 : byte & 15;
    }
    /// Byte of a repacked row holding element i of block b (Q4: the byte whose nibble it is).
    static std::size_t code_offset(const segment& s, index_t b, index_t i) noexcept {
        const index_t g = b / 16, bb = b % 16, sl = i / 4, e = i % 4;
        const index_t sw = g < s.blocks / 16 ? 64 : 4 * s.tail;  // a partial last group is compact
        const bool q8 = s.type == ggml::type::q8_0;
        return g * (q8 ? 512 : 256) + sw * (q8 ? sl : sl / 2) + 4 * bb + e;
    }

private:
    static ggml_weights slice(const ggml_weights& w, const ggml_weights::segment& s) {
        return ggml_weights(s.type, std::span<const std::byte>(s.data, s.rows * s.row_bytes), s.rows, w.cols(),
                            std::shared_ptr<const void>(std::make_shared<ggml_weights>(w)));
    }

    void repack(const ggml_weights::segment& s, segment& o) {
        const bool q8 = s.type == ggml::type::q8_0;
        o.blocks = cols_ / 32;
        o.groups = (o.blocks + 15) / 16;
        o.scale_stride = o.groups * 16;
        o.tail = o.blocks % 16;
        o.half_tail = o.tail != 0 && o.tail <= 8;
        o.code_bytes = (o.blocks / 16) * (q8 ? 512 : 256) + 4 * o.tail * (q8 ? 8 : 4);
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
                for (index_t i = 0; i < 32; ++i) {
                    if (q8) {
                        c[code_offset(o, b, i)] = static_cast<std::uint8_t>(static_cast<std::int8_t>(blk[2 + i]) + 128);
                    } else {
                        const std::uint8_t q = i < 16 ? blk[qoff + i] & 15 : blk[qoff + i - 16] >> 4;
                        c[code_offset(o, b, i)] |= static_cast<std::uint8_t>(q << (4 * ((i / 4) % 2)));
                    }
                }
            }
        }
    }

    index_t rows_ = 0, cols_ = 0;
    std::vector<std::shared_ptr<const segment>> segs_;
};

namespace detail {

/// Token t's activations rounded to int8 per block of 32, in the groups' slice layout:
/// q [groups][8 slices][16 blocks][4] int8, and per block (padded to whole groups with zeros)
/// dx [stride] its scale, sq [stride] the sum of its int8 values, sx [stride] = dx * sq.
struct a8_activations {
    const std::int8_t* q;
    const float* dx;
    const std::int32_t* sq;
    const float* sx;
};

/// Position of element i of block b in a token's int8 activations (slices of 64 bytes, 32 in
/// a half tail group: the layout of the weight codes).
inline index_t a8_act_offset(index_t blocks, index_t b, index_t i) noexcept {
    const index_t g = b / 16, full = blocks / 16;
    const index_t sw = (g == full && blocks % 16 <= 8) ? 32 : 64;
    return 512 * g + sw * (i / 4) + 4 * (b % 16) + i % 4;
}

inline void a8_quantize(const float* x, index_t blocks, index_t stride, std::int8_t* q, float* dx, std::int32_t* sq,
                        float* sx) noexcept {
    std::memset(q, 0, stride * 32);
    for (index_t b = 0; b < stride; ++b) {
        dx[b] = 0.0f;
        sq[b] = 0;
        sx[b] = 0.0f;
        if (b >= blocks) continue;
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[32 * b + i]));
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int isum = 0;
        for (int i = 0; i < 32; ++i) {
            const int v = static_cast<int>(std::nearbyint(x[32 * b + i] * inv));
            q[a8_act_offset(blocks, b, i)] = static_cast<std::int8_t>(v);
            isum += v;
        }
        dx[b] = amax / 127.0f;
        sq[b] = isum;
        sx[b] = dx[b] * static_cast<float>(isum);
    }
}

#if KITE_GGML_A8_VNNI
/// The vector operations of one group, on 512-bit vectors (16 blocks) or 256-bit ones (a last
/// group of at most 8 blocks); results widen to the 16 float lanes of the accumulators.
struct a8_v512 {
    using iv = __m512i;
    using fv = __m512;
    using mask = __mmask64;
    static constexpr index_t bytes = 64;
    static iv load_masked(mask k, const void* p) noexcept { return _mm512_maskz_loadu_epi8(k, p); }
    static iv load(const void* p) noexcept { return _mm512_loadu_si512(p); }
    static iv nibbles() noexcept { return _mm512_set1_epi8(15); }
    static iv band(iv a, iv b) noexcept { return _mm512_and_si512(a, b); }
    static iv srli4(iv a) noexcept { return _mm512_srli_epi16(a, 4); }
    static iv zero() noexcept { return _mm512_setzero_si512(); }
    static iv dpbusd(iv acc, iv w, iv x) noexcept { return _mm512_dpbusd_epi32(acc, w, x); }
    static iv add(iv a, iv b) noexcept { return _mm512_add_epi32(a, b); }
    static iv sub_shifted(iv a, const std::int32_t* p, int shift) noexcept {
        return _mm512_sub_epi32(a, _mm512_slli_epi32(_mm512_loadu_si512(p), static_cast<unsigned>(shift)));
    }
    static fv scaled(iv a, const float* dx) noexcept { return _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_loadu_ps(dx)); }
    static fv loadf(const float* p) noexcept { return _mm512_loadu_ps(p); }
    static fv half(const std::uint16_t* p) noexcept {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static __m512 wide(fv a) noexcept { return a; }
};
struct a8_v256 {
    using iv = __m256i;
    using fv = __m256;
    using mask = __mmask32;
    static constexpr index_t bytes = 32;
    static iv load_masked(mask k, const void* p) noexcept { return _mm256_maskz_loadu_epi8(k, p); }
    static iv load(const void* p) noexcept { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
    static iv nibbles() noexcept { return _mm256_set1_epi8(15); }
    static iv band(iv a, iv b) noexcept { return _mm256_and_si256(a, b); }
    static iv srli4(iv a) noexcept { return _mm256_srli_epi16(a, 4); }
    static iv zero() noexcept { return _mm256_setzero_si256(); }
    static iv dpbusd(iv acc, iv w, iv x) noexcept { return _mm256_dpbusd_epi32(acc, w, x); }
    static iv add(iv a, iv b) noexcept { return _mm256_add_epi32(a, b); }
    static iv sub_shifted(iv a, const std::int32_t* p, int shift) noexcept {
        return _mm256_sub_epi32(a, _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), shift));
    }
    static fv scaled(iv a, const float* dx) noexcept { return _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(dx)); }
    static fv loadf(const float* p) noexcept { return _mm256_loadu_ps(p); }
    static fv half(const std::uint16_t* p) noexcept {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static __m512 wide(fv a) noexcept { return _mm512_zextps256_ps512(a); }
};

/// Group g of one row for NT tokens: codes at `c` (slices `sw` bytes apart, loaded under `lm`),
/// scales d (and Q4_1 offsets m) of its 16 blocks; adds into acc[t].
template <ggml::type T, int NT, class V>
KITE_FORCE_INLINE void a8_group(const std::uint8_t* c, index_t sw, typename V::mask lm, const std::uint16_t* d,
                                const std::uint16_t* m, const a8_activations* a, index_t g, __m512* acc_out) noexcept {
    // Accumulators in locals: through the pointer they could alias the int8 loads and would
    // round-trip memory on every update.
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = acc_out[t];
    constexpr int shift = T == ggml::type::q8_0 ? 7 : 3;  // the codes' offset: 128 or 8
    const __m512 d16 = V::wide(V::half(d));
    typename V::iv w[8];
    if constexpr (T == ggml::type::q8_0) {
#pragma GCC unroll 8
        for (int sl = 0; sl < 8; ++sl) w[sl] = V::load_masked(lm, c + sw * sl);
    } else {
        const auto mask = V::nibbles();
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const auto raw = V::load_masked(lm, c + sw * j);
            w[2 * j] = V::band(raw, mask);
            w[2 * j + 1] = V::band(V::srli4(raw), mask);
        }
    }
    [[maybe_unused]] __m512 m16;
    if constexpr (T == ggml::type::q4_1) m16 = V::wide(V::half(m));
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
        const std::int8_t* xq = a[t].q + 512 * g;
        constexpr index_t B = V::bytes;
        // Four independent chains (integer sums are exact in any order).
        auto s0 = V::dpbusd(V::zero(), w[0], V::load(xq));
        auto s1 = V::dpbusd(V::zero(), w[1], V::load(xq + B));
        auto s2 = V::dpbusd(V::zero(), w[2], V::load(xq + 2 * B));
        auto s3 = V::dpbusd(V::zero(), w[3], V::load(xq + 3 * B));
        s0 = V::dpbusd(s0, w[4], V::load(xq + 4 * B));
        s1 = V::dpbusd(s1, w[5], V::load(xq + 5 * B));
        s2 = V::dpbusd(s2, w[6], V::load(xq + 6 * B));
        s3 = V::dpbusd(s3, w[7], V::load(xq + 7 * B));
        auto isum = V::add(V::add(s0, s1), V::add(s2, s3));
        if constexpr (T != ggml::type::q4_1) isum = V::sub_shifted(isum, a[t].sq + 16 * g, shift);
        acc[t] = _mm512_fmadd_ps(V::wide(V::scaled(isum, a[t].dx + 16 * g)), d16, acc[t]);
        if constexpr (T == ggml::type::q4_1) acc[t] = _mm512_fmadd_ps(m16, V::wide(V::loadf(a[t].sx + 16 * g)), acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc_out[t] = acc[t];
}
#endif

/// out[t] for NT tokens of one repacked row (see the file comment).
template <ggml::type T, int NT>
KITE_FORCE_INLINE void a8_row_dot(const ggml_a8_weights::segment& s, index_t r, const a8_activations* a,
                                  float* out) noexcept {
    [[maybe_unused]] constexpr bool q8 = T == ggml::type::q8_0;
    [[maybe_unused]] constexpr int shift = T == ggml::type::q8_0 ? 7 : 3;  // the codes' offset: 128 or 8
    const std::uint8_t* c = s.codes.data() + r * s.code_bytes;
    const std::uint16_t* d = s.d.data() + r * s.scale_stride;
    [[maybe_unused]] const std::uint16_t* m = T == ggml::type::q4_1 ? s.m.data() + r * s.scale_stride : nullptr;
#if KITE_GGML_A8_VNNI
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const index_t full = s.half_tail ? s.groups - 1 : s.groups;
    const std::size_t gb = q8 ? 512 : 256;  // code bytes of a full group
    for (index_t g = 0; g < full; ++g) {
        // A partial group (9..15 blocks) has slices of 4 t bytes, loaded masked.
        const bool part = g == s.blocks / 16;
        const index_t sw = part ? 4 * s.tail : 64;
        const __mmask64 lm = part ? (__mmask64{1} << sw) - 1 : ~__mmask64{0};
        a8_group<T, NT, a8_v512>(c + gb * g, sw, lm, d + 16 * g, m ? m + 16 * g : nullptr, a, g, acc);
    }
    if (s.half_tail) {  // the same per-lane operations on 8 blocks (lanes 8..15 get + 0)
        const index_t sw = 4 * s.tail;
        const __mmask32 lm = sw == 32 ? ~__mmask32{0} : (__mmask32{1} << sw) - 1;
        a8_group<T, NT, a8_v256>(c + gb * full, sw, lm, d + 16 * full, m ? m + 16 * full : nullptr, a, full, acc);
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
#else
    // The same integer sums and float operations per lane (lane = block mod 16).
    for (int t = 0; t < NT; ++t) {
        float acc[16] = {};
        for (index_t b = 0; b < s.scale_stride; ++b) {
            const index_t bb = b % 16;
            std::int32_t isum = 0;
            for (int i = 0; i < 32; ++i) {
                const int u = b < s.blocks ? ggml_a8_weights::code(s, c, b, i) : 0;
                isum += u * a[t].q[a8_act_offset(s.blocks, b, i)];
            }
            if constexpr (T != ggml::type::q4_1) isum -= a[t].sq[b] * (1 << shift);
            const float f = static_cast<float>(isum) * a[t].dx[b];
            acc[bb] = std::fma(f, kite::detail::fp16_bits_to_float(d[b]), acc[bb]);
            if constexpr (T == ggml::type::q4_1) acc[bb] = std::fma(kite::detail::fp16_bits_to_float(m[b]), a[t].sx[b], acc[bb]);
        }
        float sum = 0;
        for (int l = 0; l < 16; ++l) sum += acc[l];
        out[t] = sum;
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
    const index_t blocks = k / 32, stride = (blocks + 15) / 16 * 16;
    std::int8_t* q = scratch<std::int8_t, 12>(T * stride * 32 + 64);
    float* dx = scratch<float, 13>(T * stride + 16);
    float* sx = scratch<float, 14>(T * stride + 16);
    std::int32_t* sq = scratch<std::int32_t, 16>(T * stride + 16);
    a8_activations* acts = scratch<a8_activations, 15>(T);
    for (index_t t = 0; t < T; ++t) {
        a8_quantize(X.row(t).data(), blocks, stride, q + t * stride * 32, dx + t * stride, sq + t * stride, sx + t * stride);
        acts[t] = {q + t * stride * 32, dx + t * stride, sq + t * stride, sx + t * stride};
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
