// kite/quant/ggml.hpp: GEMV and GEMM on ggml blocks as stored (F32, F16, BF16, Q8_0, Q4_0, Q4_1),
// against the dequantize-then-multiply oracle in double, on random and adversarial rows, odd
// shapes, stacked segments of different types, one and two threads; batch and thread
// invariance bit for bit; the Q8_0 quantizer against ggml's rule; bad input. The same for
// ggml_a8_weights (int8 activations) and ggml_panel_weights (float activations on panels).

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kite/core/cpu.hpp"
#include "kite/quant/ggml.hpp"
#include "kite/quant/ggml_a8.hpp"
#include "kite/quant/ggml_panel.hpp"
#include "kite/quant/reference.hpp"
#include "kite_test.hpp"

namespace q = kite::quant;
namespace gg = kite::quant::ggml;
using kite::index_t;

namespace {

std::uint16_t f16_bits(float v) { return kite::detail::float_to_fp16_bits(v); }

/// Random bytes of `rows` rows of `cols` elements of type t, with finite scales of varied
/// magnitude (whole rows of zero scale and of tiny scales among them).
std::vector<std::byte> random_rows(gg::type t, index_t rows, index_t cols, std::uint64_t seed) {
    std::mt19937_64 g(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const std::size_t rb = gg::row_bytes(t, cols);
    std::vector<std::byte> out(rows * rb);
    for (index_t r = 0; r < rows; ++r) {
        auto* p = reinterpret_cast<std::uint8_t*>(out.data() + r * rb);
        const float row_scale = r % 7 == 3 ? 0.0f : (r % 7 == 5 ? 1e-6f : 0.02f * (1.0f + static_cast<float>(r % 3)));
        if (t == gg::type::f32) {
            for (index_t c = 0; c < cols; ++c) {
                const float v = nd(g) * (row_scale > 0 ? row_scale * 50 : 0.0f);
                std::memcpy(p + 4 * c, &v, 4);
            }
        } else if (t == gg::type::f16 || t == gg::type::bf16) {
            for (index_t c = 0; c < cols; ++c) {
                const float v = nd(g) * (row_scale > 0 ? row_scale * 50 : 0.0f);
                const std::uint16_t h = t == gg::type::f16 ? f16_bits(v) : kite::detail::float_to_bf16_bits(v);
                std::memcpy(p + 2 * c, &h, 2);
            }
        } else {
            const auto ti = gg::info(t);
            for (index_t b = 0; b < cols / 32; ++b) {
                auto* blk = p + b * ti.block_bytes;
                for (std::uint32_t i = 0; i < ti.block_bytes; ++i) blk[i] = static_cast<std::uint8_t>(byte(g));
                // Period 11 along the row: no two blocks 4, 8 or 16 apart share a scale, so a
                // kernel that takes one block's scale for another's is seen.
                const std::uint16_t d = f16_bits(row_scale * (0.5f + 0.3f * static_cast<float>(b % 11)));
                std::memcpy(blk, &d, 2);
                if (t == gg::type::q4_1) {
                    const std::uint16_t m = f16_bits(-8.0f * row_scale * nd(g));
                    std::memcpy(blk + 2, &m, 2);
                }
            }
        }
    }
    return out;
}

/// |y - oracle| <= 2e-6 sqrt(k + 16) sum |w x| + 1e-30 per output (float accumulation in blocks).
void check_against_oracle(const q::ggml_weights& w, kite::matrix_view<const float> X, kite::matrix_view<const float> Y,
                          const std::string& what) {
    const kite::matrix<float> W = q::dequantize(w);
    const index_t k = w.cols();
    std::vector<double> want(X.rows() * w.rows()), bound(X.rows() * w.rows());
    for (index_t t = 0; t < X.rows(); ++t)
        for (index_t r = 0; r < w.rows(); ++r) {
            double s = 0, a = 0;
            for (index_t c = 0; c < k; ++c) {
                s += static_cast<double>(W(r, c)) * X(t, c);
                a += std::abs(static_cast<double>(W(r, c)) * X(t, c));
            }
            want[t * w.rows() + r] = s;
            bound[t * w.rows() + r] = 2e-6 * std::sqrt(static_cast<double>(k) + 16.0) * a + 1e-30;
        }
    INFO(what);
    CHECK(kite::test::max_diff(Y, kite::matrix_view<const double>(want.data(), X.rows(), w.rows()),
                               [&](std::size_t i, double a, double b) { return std::abs(a - b) / bound[i]; },
                               "|y - oracle| / bound") <= 1.0);
}

kite::matrix<float> activations(index_t t, index_t k, std::uint64_t seed) {
    kite::matrix<float> X(t, k);
    const auto v = kite::test::randn(t * k, seed);
    std::copy(v.begin(), v.end(), X.data());
    if (t > 1 && k > 40) {
        X(1, 7) = 300.0f;  // an outlier
        for (index_t c = 0; c < 32; ++c) X(0, c) = 0.0f;  // a block of zeros
    }
    return X;
}

const gg::type all_types[] = {gg::type::q4_1, gg::type::q4_0, gg::type::q8_0, gg::type::f16, gg::type::bf16, gg::type::f32};

}  // namespace

TEST_CASE("ggml gemv / gemm equal the double oracle for every native type", "[quant][ggml]") {
    std::uint64_t seed = 100;
    for (const auto t : all_types) {
        const bool flt = gg::info(t).block_elems == 1;
        for (const index_t k : {index_t{32}, index_t{64}, index_t{576}, index_t{1536}, index_t{4096}, static_cast<index_t>(flt ? 37 : 96), static_cast<index_t>(flt ? 5 : 160)}) {
            for (const index_t m : {index_t{1}, index_t{15}, index_t{16}, index_t{17}, index_t{33}}) {
                const auto bytes = random_rows(t, m, k, seed++);
                const q::ggml_weights w(t, bytes, m, k);
                CHECK(w.rows() == m);
                CHECK(w.cols() == k);
                CHECK(w.bytes() == bytes.size());
                for (const index_t T : {index_t{1}, index_t{3}, index_t{8}, index_t{11}}) {
                    const auto X = activations(T, k, seed++);
                    for (const int threads : {1, 2}) {
                        kite::matrix<float> Y(T, m, -7.0f);
                        q::gemm(w, X.view(), Y.view(), threads);
                        check_against_oracle(w, X.view(), Y.view(),
                                             std::string(gg::name(t)) + " m " + std::to_string(m) + " k " + std::to_string(k) +
                                                 " T " + std::to_string(T) + " threads " + std::to_string(threads));
                    }
                }
            }
        }
    }
}

TEST_CASE("ggml kernels are batch and thread invariant, bit for bit", "[quant][ggml]") {
    std::uint64_t seed = 900;
    for (const auto t : all_types) {
        const index_t m = 70, k = 576;
        const auto bytes = random_rows(t, m, k, seed++);
        const q::ggml_weights w(t, bytes, m, k);
        const auto X = activations(13, k, seed++);
        kite::matrix<float> all(13, m);
        q::gemm(w, X.view(), all.view(), 2);
        for (index_t i = 0; i < 13; ++i) {
            std::vector<float> one(m);
            q::gemv(w, X.row(i), one, 1);
            INFO(gg::name(t) << " token " << i);
            CHECK(std::memcmp(one.data(), all.row(i).data(), m * sizeof(float)) == 0);
            kite::matrix<float> two(2, m);
            kite::matrix<float> pair(2, k);
            std::copy(X.row(i).begin(), X.row(i).end(), pair.row(0).begin());
            std::copy(X.row((i + 5) % 13).begin(), X.row((i + 5) % 13).end(), pair.row(1).begin());
            q::gemm(w, pair.view(), two.view(), 1);
            CHECK(std::memcmp(two.row(0).data(), all.row(i).data(), m * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("ggml_weights: stacked segments of different types, values, dequantize", "[quant][ggml]") {
    const index_t k = 96;
    const auto a = random_rows(gg::type::q4_1, 5, k, 1), b = random_rows(gg::type::q8_0, 3, k, 2),
               c = random_rows(gg::type::f16, 4, k, 3);
    const q::ggml_weights wa(gg::type::q4_1, a, 5, k), wb(gg::type::q8_0, b, 3, k), wc(gg::type::f16, c, 4, k);
    const auto s = q::ggml_weights::stack({wa, wb, wc});
    REQUIRE(s.rows() == 12);
    CHECK(s.segments().size() == 3);
    CHECK(s.bytes() == a.size() + b.size() + c.size());
    const auto X = activations(9, k, 4);
    kite::matrix<float> Y(9, 12), Ya(9, 5), Yb(9, 3), Yc(9, 4);
    q::gemm(s, X.view(), Y.view(), 2);
    q::gemm(wa, X.view(), Ya.view());
    q::gemm(wb, X.view(), Yb.view());
    q::gemm(wc, X.view(), Yc.view());
    for (index_t t = 0; t < 9; ++t) {
        CHECK(std::memcmp(Y.row(t).data(), Ya.row(t).data(), 5 * sizeof(float)) == 0);
        CHECK(std::memcmp(Y.row(t).data() + 5, Yb.row(t).data(), 3 * sizeof(float)) == 0);
        CHECK(std::memcmp(Y.row(t).data() + 8, Yc.row(t).data(), 4 * sizeof(float)) == 0);
    }
    check_against_oracle(s, X.view(), Y.view(), "stacked");
    const kite::matrix<float> D = q::dequantize(s);
    std::vector<float> row(k);
    gg::decode_row(gg::type::q8_0, b.data() + gg::row_bytes(gg::type::q8_0, k), row.data(), k);  // row 1 of b
    for (index_t i = 0; i < k; i += 5) {
        CHECK(D(6, i) == row[i]);
        CHECK(s.value(6, i) == row[i]);
    }
    // The reference oracle of kite/quant reads any weight_format.
    std::vector<float> yr(12);
    q::reference::gemv(s, X.row(2), yr);
    CHECK(kite::test::max_abs_diff(yr, Y.row(2)) <= 1e-4);
}

TEST_CASE("ggml_blocks quantizes float weights to Q8_0 as ggml does", "[quant][ggml]") {
    kite::matrix<float> W(3, 64);
    const auto v = kite::test::randn(3 * 64, 77);
    std::copy(v.begin(), v.end(), W.data());
    W(1, 40) = 0.0f;
    for (index_t c = 0; c < 32; ++c) W(2, c) = 0.0f;  // an all-zero block: d = 0, q = 0
    W(0, 3) = 2.5f * 127.0f / 127.0f;
    const auto w = q::ggml_blocks{}.quantize(W.view());
    REQUIRE(w.segments().size() == 1);
    CHECK(w.segments()[0].type == gg::type::q8_0);
    for (index_t r = 0; r < 3; ++r)
        for (index_t b = 0; b < 2; ++b) {
            // NaN-safe (a NaN weight would keep its NaN and fail the comparisons below).
            const auto amax = static_cast<float>(kite::test::max_abs_of(W.row(r).subspan(32 * b, 32)));
            const float d = amax / 127.0f;
            const float dh = kite::detail::fp16_bits_to_float(f16_bits(d));
            for (index_t i = 0; i < 32; ++i) {
                const float want = static_cast<float>(std::round(W(r, 32 * b + i) * (d != 0 ? 1.0f / d : 0.0f))) * dh;
                INFO("row " << r << " col " << 32 * b + i);
                CHECK(w.value(r, 32 * b + i) == want);
            }
        }
    KITE_REQUIRE_THROWS_CONTAINING(q::ggml_blocks{}.quantize(kite::matrix<float>(2, 33).view()), kite::shape_error,
                                   "33 columns; expected a multiple of 32");
}

TEST_CASE("ggml_weights refuse what they cannot multiply", "[quant][ggml][errors]") {
    std::vector<std::byte> bytes(144);
    KITE_REQUIRE_THROWS_CONTAINING(q::ggml_weights(gg::type::q4_k, bytes, 1, 256), kite::invalid_argument,
                                   "type Q4_K is not multiplied as stored");
    KITE_REQUIRE_THROWS_CONTAINING(q::ggml_weights(gg::type::q8_0, bytes, 1, 48), kite::invalid_argument,
                                   "rows of 48 elements are not a whole number of Q8_0 blocks");
    KITE_REQUIRE_THROWS_CONTAINING(q::ggml_weights(gg::type::q8_0, bytes, 2, 64), kite::invalid_argument,
                                   "144 bytes for 2 x 64 Q8_0; expected 136");
    const auto ok = random_rows(gg::type::q8_0, 2, 64, 5);
    const q::ggml_weights w(gg::type::q8_0, ok, 2, 64);
    std::vector<float> x(63), y(2);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "in_features = 64");
    kite::matrix<float> X(3, 64), Y(3, 3);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemm(w, X.view(), Y.view()), kite::shape_error, "expected 3 x 2");
    const q::ggml_weights other(gg::type::f32, std::span<const std::byte>(), 0, 32);
    KITE_REQUIRE_THROWS_CONTAINING(q::ggml_weights::stack({w, other}), kite::shape_error, "32 columns; expected 64");
}

// ---- int8 activations (kite/quant/ggml_a8.hpp) -----------------------------------------------

namespace {

/// The int8-activation product in double from its definition: x rounded to int8 per block of 32
/// (scale max|x| / 127, half to even), integer dot products with the weight levels, scaled.
std::vector<double> a8_oracle(const q::ggml_weights& w, const kite::matrix<float>& X) {
    const kite::matrix<float> W = q::dequantize(w);
    const index_t k = w.cols(), nb = k / 32;
    std::vector<double> out(X.rows() * w.rows());
    for (index_t t = 0; t < X.rows(); ++t) {
        std::vector<double> xq(k);
        for (index_t b = 0; b < nb; ++b) {
            const auto amax = static_cast<float>(kite::test::max_abs_of(X.row(t).subspan(32 * b, 32)));  // NaN kept
            const float dx = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
            for (index_t i = 0; i < 32; ++i)
                xq[32 * b + i] = static_cast<double>(dx) * std::nearbyint(X(t, 32 * b + i) * inv);
        }
        for (index_t r = 0; r < w.rows(); ++r) {
            double s = 0;
            for (index_t c = 0; c < k; ++c) s += static_cast<double>(W(r, c)) * xq[c];
            out[t * w.rows() + r] = s;
        }
    }
    return out;
}

}  // namespace

TEST_CASE("ggml_a8: the repack keeps every value; products equal the int8-activation oracle", "[quant][ggml][a8]") {
    std::uint64_t seed = 3000;
    for (const auto t : {gg::type::q4_1, gg::type::q4_0, gg::type::q8_0, gg::type::f16}) {
        // 1, 5, 18 (SmolLM2), 25, 48 and 19 blocks per row: odd and even counts, the
        // shapes whose tails the earlier 16-block-group layout handled apart
        for (const index_t k : {index_t{32}, index_t{160}, index_t{576}, index_t{800}, index_t{1536}, index_t{608}}) {
            const index_t m = 37;
            const auto bytes = random_rows(t, m, k, seed++);
            const q::ggml_weights w(t, bytes, m, k);
            const q::ggml_a8_weights a(w);
            INFO(gg::name(t) << " k " << k);
            const auto D = q::dequantize(w), Da = q::dequantize(a);
            CHECK(kite::test::max_ulp_diff(Da.flat(), D.flat()) <= 0.0);  // lossless
            for (const index_t T : {index_t{1}, index_t{5}, index_t{9}}) {
                auto X = activations(T, k, seed++);
                if (T > 2 && k >= 64) {
                    // A block whose int8 rounding meets exact ties (max 127: the scale is 1): to even.
                    const float ties[] = {127.0f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.5f, -126.5f, 126.5f, -0.0f};
                    for (index_t c = 0; c < 32; ++c) X(2, 32 + c) = ties[c % 10];
                }
                kite::matrix<float> Y(T, m);
                q::gemm(a, X.view(), Y.view(), static_cast<int>(T % 2) + 1);
                if (t == gg::type::f16) {  // float rows keep float activations
                    check_against_oracle(w, X.view(), Y.view(), "a8 f16 rows");
                    continue;
                }
                const auto want = a8_oracle(w, X);
                // Integer products are exact; the float scaling and sums: ~1e-6 relative.
                std::vector<double> bound(want.size());
                for (index_t i = 0; i < T; ++i)
                    for (index_t r = 0; r < m; ++r) {
                        double mag = 0;
                        for (index_t c = 0; c < k; ++c) mag += std::abs(static_cast<double>(D(r, c)) * X(i, c));
                        bound[i * m + r] = 2e-6 * std::sqrt(static_cast<double>(k) + 16.0) * mag + 1e-30;
                    }
                CHECK(kite::test::max_diff(Y.view(), kite::matrix_view<const double>(want.data(), T, m),
                                           [&](std::size_t i, double x, double y) { return std::abs(x - y) / bound[i]; },
                                           "|y - a8 oracle| / bound") <= 1.0);
            }
        }
    }
}

TEST_CASE("ggml_a8: batch and thread invariant, stacked segments, bad shapes", "[quant][ggml][a8]") {
    const index_t k = 576;
    const auto a4 = random_rows(gg::type::q4_1, 20, k, 41), a8 = random_rows(gg::type::q8_0, 9, k, 42),
               af = random_rows(gg::type::bf16, 5, k, 43);
    const auto w = q::ggml_weights::stack({q::ggml_weights(gg::type::q4_1, a4, 20, k),
                                           q::ggml_weights(gg::type::q8_0, a8, 9, k),
                                           q::ggml_weights(gg::type::bf16, af, 5, k)});
    const q::ggml_a8_weights a(w);
    CHECK(a.rows() == 34);
    const auto X = activations(11, k, 44);
    kite::matrix<float> all(11, 34);
    q::gemm(a, X.view(), all.view(), 2);
    for (index_t i = 0; i < 11; ++i) {
        std::vector<float> one(34);
        q::gemv(a, X.row(i), one, 1);
        INFO("token " << i);
        CHECK(std::memcmp(one.data(), all.row(i).data(), 34 * sizeof(float)) == 0);
    }
    // Both tunings' prefetch (the only difference) on every token: the same bits.
    for (const auto tuning : {kite::cpu::tuning::intel, kite::cpu::tuning::zen}) {
        const kite::cpu::scoped_tuning force(tuning);
        kite::matrix<float> again(11, 34);
        q::gemm(a, X.view(), again.view(), 2);
        CHECK(std::memcmp(again.data(), all.data(), 11 * 34 * sizeof(float)) == 0);
        std::vector<float> one(34);
        q::gemv(a, X.row(3), one, 1);
        CHECK(std::memcmp(one.data(), all.row(3).data(), 34 * sizeof(float)) == 0);
    }
    // prefetch() is a hint: on every kind of weights and under both tunings it changes nothing.
    for (const auto tuning : {kite::cpu::tuning::intel, kite::cpu::tuning::zen}) {
        const kite::cpu::scoped_tuning force(tuning);
        q::ggml_a8_weights{}.prefetch();
        q::ggml_a8_weights(q::ggml_weights(gg::type::bf16, af, 5, k)).prefetch();
        a.prefetch();
        std::vector<float> one(34);
        q::gemv(a, X.row(5), one, 1);
        CHECK(std::memcmp(one.data(), all.row(5).data(), 34 * sizeof(float)) == 0);
    }
    // The layout: panels of 16 rows, each block's unit the file's bytes (codes, d, Q4_1's m).
    const auto& s4 = *a.segments()[0];  // Q4_1, 20 rows: 2 panels of 18 units (the last padded)
    CHECK(s4.unit_bytes == 320);
    CHECK(s4.panel_bytes == 18 * 320);
    CHECK(s4.data.size() >= 2 * 18 * 320);
    CHECK(a.segments()[1]->unit_bytes == 544);
    std::vector<float> x(k - 1), y(34);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(a, x, y), kite::shape_error, "in_features = 576");
}

TEST_CASE("ggml_a8: the AMX tile kernel gives the VNNI kernels' bits", "[quant][ggml][a8][amx]") {
    if (!kite::cpu::amx_int8_available())
        WARN("this CPU or OS gives no AMX-INT8: both runs below take the VNNI / portable kernels");
    std::uint64_t seed = 5000;
    const auto run = [](const q::ggml_a8_weights& a, const kite::matrix<float>& X, bool amx, int threads) {
        const kite::cpu::scoped_amx allow(amx);
        kite::matrix<float> Y(X.rows(), a.rows());
        q::gemm(a, X.view(), Y.view(), threads);
        return Y;
    };
    for (const auto t : {gg::type::q4_1, gg::type::q4_0, gg::type::q8_0})
        // 1, 5, 18 (SmolLM2), 25, 48 and 19 blocks per row: a last group of 1, 2 or 3 blocks for the
        // tile kernel's groups of 4, and none
        for (const index_t k : {index_t{32}, index_t{160}, index_t{576}, index_t{800}, index_t{1536}, index_t{608}})
            // rows: one block of 8, a partial block, several chunks of 16 ending in a partial one
            for (const index_t m : {index_t{8}, index_t{13}, index_t{37}}) {
                const auto bytes = random_rows(t, m, k, seed++);
                const q::ggml_a8_weights a(q::ggml_weights(t, bytes, m, k));
                // the smallest batch on tiles (whole tiles of 16), partial tiles of 1, 6 and 9
                // tokens (the terms run on 4, 8 and 12), several tiles
                const index_t t0 = q::detail::a8_amx_min_tokens;
                for (const index_t T : {t0, t0 + 1, t0 + 6, 2 * t0 + 9}) {
                    const auto X = activations(T, k, seed++);
                    INFO(gg::name(t) << " k " << k << " rows " << m << " tokens " << T);
                    const auto want = run(a, X, false, 1);
                    const auto got = run(a, X, true, static_cast<int>(T % 2) + 1);
                    CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0);
                }
            }
    // Stacked segments whose boundaries fall inside chunks of 16 rows (20 Q4_1, 9 Q8_0, 5 BF16).
    const index_t k = 576;
    const auto a4 = random_rows(gg::type::q4_1, 20, k, 51), a8 = random_rows(gg::type::q8_0, 9, k, 52),
               af = random_rows(gg::type::bf16, 5, k, 53);
    const q::ggml_a8_weights a(q::ggml_weights::stack({q::ggml_weights(gg::type::q4_1, a4, 20, k),
                                                        q::ggml_weights(gg::type::q8_0, a8, 9, k),
                                                        q::ggml_weights(gg::type::bf16, af, 5, k)}));
    const auto X = activations(q::detail::a8_amx_min_tokens + 3, k, 54);
    const auto want = run(a, X, false, 2);
    for (const int threads : {1, 2}) {
        const auto got = run(a, X, true, threads);
        CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0);
    }
    // Each token alone (gemv: the VNNI kernel) gives its row of the batch on tiles.
    const auto batch = run(a, X, true, 2);
    for (index_t i = 0; i < X.rows(); ++i) {
        std::vector<float> one(a.rows());
        q::gemv(a, X.row(i), one, 1);
        CHECK(std::memcmp(one.data(), batch.row(i).data(), one.size() * sizeof(float)) == 0);
    }
}

// ---- ggml_panel_weights: float activations on the repacked panels --------------------------

namespace {

/// Y from the portable twin, segment by segment (float segments: ggml_weights' kernel, as
/// the product does).
kite::matrix<float> panel_twin(const q::ggml_panel_weights& w, const kite::matrix<float>& X) {
    const index_t T = X.rows(), blocks = w.cols() / 32;
    std::vector<float> sx(T * blocks);
    for (index_t t = 0; t < T; ++t)
        for (index_t b = 0; b < blocks; ++b) sx[t * blocks + b] = q::detail::panel_block_sum(X.row(t).data() + 32 * b);
    kite::matrix<float> Y(T, w.rows(), -7.0f);
    index_t base = 0;
    for (const auto& sp : w.panels().segments()) {
        const auto& s = *sp;
        if (!s.plain.segments().empty()) {
            kite::matrix<float> part(T, s.rows);
            q::gemm(s.plain, X.view(), part.view(), 1);
            for (index_t t = 0; t < T; ++t) std::copy(part.row(t).begin(), part.row(t).end(), Y.row(t).begin() + base);
        } else {
            float* y = Y.data() + base;
            switch (s.type) {
                case gg::type::q4_1: q::detail::panel_rows_portable<gg::type::q4_1>(s, 0, s.rows, X.data(), w.cols(), sx.data(), T, y, w.rows()); break;
                case gg::type::q4_0: q::detail::panel_rows_portable<gg::type::q4_0>(s, 0, s.rows, X.data(), w.cols(), sx.data(), T, y, w.rows()); break;
                default: q::detail::panel_rows_portable<gg::type::q8_0>(s, 0, s.rows, X.data(), w.cols(), sx.data(), T, y, w.rows()); break;
            }
        }
        base += s.rows;
    }
    return Y;
}

}  // namespace

TEST_CASE("ggml_panel: products equal the double oracle and the portable twin's bits", "[quant][ggml][panel]") {
    std::uint64_t seed = 7000;
    for (const auto t : {gg::type::q4_1, gg::type::q4_0, gg::type::q8_0})
        for (const index_t k : {index_t{32}, index_t{96}, index_t{576}, index_t{1536}})
            for (const index_t m : {index_t{1}, index_t{15}, index_t{16}, index_t{17}, index_t{33}}) {
                const auto bytes = random_rows(t, m, k, seed++);
                const q::ggml_weights as_stored(t, bytes, m, k);
                const q::ggml_panel_weights w(as_stored);
                CHECK(w.rows() == m);
                CHECK(w.cols() == k);
                // 1 .. 4 tokens: one pass; 5 and 9: a partial last pass; 11: from the parallel sums on
                for (const index_t T : {index_t{1}, index_t{3}, index_t{4}, index_t{5}, index_t{9}, index_t{11}}) {
                    const auto X = activations(T, k, seed++);
                    const auto twin = panel_twin(w, X);
                    for (const int threads : {1, 2}) {
                        kite::matrix<float> Y(T, m, -7.0f);
                        q::gemm(w, X.view(), Y.view(), threads);
                        const std::string what = std::string(gg::name(t)) + " m " + std::to_string(m) + " k " +
                                                 std::to_string(k) + " T " + std::to_string(T) + " threads " + std::to_string(threads);
                        check_against_oracle(as_stored, X.view(), Y.view(), what);
                        INFO(what);
                        CHECK(std::memcmp(Y.data(), twin.data(), T * m * sizeof(float)) == 0);
                    }
                }
            }
}

TEST_CASE("ggml_panel: batch and thread invariant, stacked segments, NaN stays in its token, bad shapes", "[quant][ggml][panel]") {
    const index_t k = 576;
    const auto a4 = random_rows(gg::type::q4_1, 20, k, 71), a0 = random_rows(gg::type::q4_0, 7, k, 72),
               a8 = random_rows(gg::type::q8_0, 9, k, 73), af = random_rows(gg::type::bf16, 5, k, 74);
    const auto stored = q::ggml_weights::stack({q::ggml_weights(gg::type::q4_1, a4, 20, k), q::ggml_weights(gg::type::q4_0, a0, 7, k),
                                                q::ggml_weights(gg::type::q8_0, a8, 9, k), q::ggml_weights(gg::type::bf16, af, 5, k)});
    const q::ggml_panel_weights w(stored);
    const index_t m = 41;
    REQUIRE(w.rows() == m);
    // The values: exactly the file's (the repack drops nothing).
    const auto W0 = q::dequantize(stored), W1 = q::dequantize(w);
    CHECK(std::memcmp(W0.data(), W1.data(), m * k * sizeof(float)) == 0);
    const auto X = activations(13, k, 75);
    kite::matrix<float> all(13, m);
    q::gemm(w, X.view(), all.view(), 2);
    check_against_oracle(stored, X.view(), all.view(), "stacked");
    const auto twin = panel_twin(w, X);
    CHECK(std::memcmp(all.data(), twin.data(), 13 * m * sizeof(float)) == 0);
    for (index_t i = 0; i < 13; ++i) {
        std::vector<float> one(m);
        q::gemv(w, X.row(i), one, 1);
        INFO("token " << i);
        CHECK(std::memcmp(one.data(), all.row(i).data(), m * sizeof(float)) == 0);
        kite::matrix<float> pair(2, k), two(2, m);
        std::copy(X.row(i).begin(), X.row(i).end(), pair.row(0).begin());
        std::copy(X.row((i + 5) % 13).begin(), X.row((i + 5) % 13).end(), pair.row(1).begin());
        q::gemm(w, pair.view(), two.view(), 3);
        CHECK(std::memcmp(two.row(0).data(), all.row(i).data(), m * sizeof(float)) == 0);
    }
    // A NaN in one token's activations: every output of that token NaN, the others' bits unchanged.
    auto Xn = activations(13, k, 75);
    Xn(6, 100) = std::numeric_limits<float>::quiet_NaN();
    kite::matrix<float> yn(13, m);
    q::gemm(w, Xn.view(), yn.view(), 2);
    for (index_t r = 0; r < m; ++r) CHECK(std::isnan(yn(6, r)));
    for (index_t i = 0; i < 13; ++i)
        if (i != 6) CHECK(std::memcmp(yn.row(i).data(), all.row(i).data(), m * sizeof(float)) == 0);
    // prefetch() is a hint; a copy shares the storage and gives the same bits.
    w.prefetch();
    const auto c = w.clone();
    std::vector<float> one(m);
    q::gemv(c, X.row(2), one, 2);
    CHECK(std::memcmp(one.data(), all.row(2).data(), m * sizeof(float)) == 0);
    std::vector<float> x(k - 1), y(m);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "in_features = 576");
    kite::matrix<float> Yb(2, m + 1);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemm(w, X.view().block(0, 0, 2, k), Yb.view()), kite::shape_error, "batch x out_features");
}
