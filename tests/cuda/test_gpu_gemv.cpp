// kite::cuda::gemv against kite's CPU formats: every weight format (f32, bf16, int8_rows,
// int4_g128 symmetric / asymmetric with float / fp16 scales, GGUF Q4_0 / Q4_1 / Q8_0), batch 1
// and 5, ragged shapes (cols not a multiple of 128, odd cols, 1 / 7 / 4096 rows), with and
// without bias, outputs poisoned with NaN. Oracle: the host format's own dequantized weights
// (value() / ggml decode_row: the CPU's floats) multiplied in double (tests/quant's
// oracle_gemm), with both an overall relative error and the per-output rounding bound.
// Bad arguments throw kite::invalid_argument before any CUDA call (no GPU needed).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_test.hpp"
#include "kite_compare.hpp"
#include "kite/cuda/gemv.hpp"
#include "kite/cuda/gemv_upload.hpp"
#include "quant/quant_test_util.hpp"

using namespace kite;
namespace kq = kite::quant;
namespace kcu = kite::cuda;

namespace {

// The weights each host format represents, as a double matrix (exactly the CPU's floats).
template <class F>
matrix<double> host_weights(const F& w) {
    const matrix<float> f = [&] {
        if constexpr (std::is_same_v<F, kq::ggml_weights>) {
            return kq::dequantize(w);  // decode_row per row: ggml's exact floats
        } else {
            return kq::reference::dequantize(w);  // value() per element
        }
    }();
    matrix<double> d(f.rows(), f.cols());
    for (index_t r = 0; r < f.rows(); ++r)
        for (index_t c = 0; c < f.cols(); ++c) d(r, c) = f(r, c);
    return d;
}

// y = x W^T (+ bias) on the device; y poisoned (NaN) first.
std::vector<float> run_gemv(const kcu::gemv_weights& w, const std::vector<float>& x, int batch,
                            const std::vector<float>& bias) {
    kcu::device_buffer<float> dx{std::span<const float>(x)};
    kcu::device_buffer<float> dy(static_cast<index_t>(batch) * w.rows);
    dy.fill_bytes(0xFF);
    kcu::device_buffer<float> db;
    if (!bias.empty()) db = kcu::device_buffer<float>(std::span<const float>(bias));
    kcu::gemv(w, dx.data(), dy.data(), batch, bias.empty() ? nullptr : db.data());
    kcu::synchronize();
    std::vector<float> y(static_cast<std::size_t>(batch) * w.rows);
    dy.download(y);
    return y;
}

// Uploads `host`, runs batch vectors with / without bias and compares with the double oracle.
template <class F>
void check_format(const std::string& name, const F& host, int batch, bool with_bias, std::uint64_t seed,
                  double bar = 1e-6) {
    const kcu::device_matrix dm = kcu::upload(host);
    const index_t rows = host.rows(), cols = host.cols();
    REQUIRE(dm.rows() == static_cast<int>(rows));
    REQUIRE(dm.cols() == static_cast<int>(cols));
    const auto x = kite::test::quant::activations(static_cast<std::size_t>(batch) * cols, seed);
    const std::vector<float> bias = with_bias ? kite::test::randn(rows, seed + 7) : std::vector<float>{};
    const std::vector<float> y = run_gemv(dm.view(), x, batch, bias);

    const matrix<double> d = host_weights(host);
    const auto o = kite::test::quant::oracle_gemm(d, matrix_view<const float>(x.data(), batch, cols));
    std::vector<double> ref(y.size());
    index_t bad = 0;
    for (index_t t = 0; t < static_cast<index_t>(batch); ++t)
        for (index_t r = 0; r < rows; ++r) {
            const double b = with_bias ? static_cast<double>(bias[r]) : 0.0;
            const double want = o.y(t, r) + b;
            ref[t * rows + r] = want;
            const double tol = o.bound(t, r) + 2.4e-7 * (std::abs(o.y(t, r)) + std::abs(b)) + 1e-30;
            const double got = y[t * rows + r];
            if (!(std::abs(got - want) <= tol)) {
                if (bad < 5) UNSCOPED_INFO("row " << r << " vector " << t << ": got " << got << ", want " << want);
                ++bad;
            }
        }
    const double err = kite::test::rel_l2(y, ref);
    const std::string label = name + " " + std::to_string(rows) + "x" + std::to_string(cols) + " batch " +
                              std::to_string(batch) + (with_bias ? " bias" : "");
    std::printf("kite-gpu-err gemv %s %.3e\n", label.c_str(), err);
    INFO(label << ": rel_l2 " << err << ", outputs past their rounding bound " << bad);
    CHECK(err <= bar);
    CHECK(bad == 0);
}

// A GGUF matrix of random blocks: finite fp16 scales (d, and m for Q4_1) of both signs and random
// levels (every code byte random).
kq::ggml_weights random_gguf(kq::ggml::type t, index_t rows, index_t cols, std::uint64_t seed) {
    const auto info = kq::ggml::info(t);
    const std::size_t nb = cols / 32, rb = nb * info.block_bytes;
    aligned_buffer<std::byte> bytes(rows * rb);
    std::mt19937_64 g(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> mag(0.002f, 0.05f), off(-0.1f, 0.1f);
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes.data()[i] = static_cast<std::byte>(byte(g));
    for (index_t r = 0; r < rows; ++r)
        for (std::size_t b = 0; b < nb; ++b) {
            auto* blk = reinterpret_cast<std::uint8_t*>(bytes.data() + r * rb + b * info.block_bytes);
            const float d = (byte(g) & 1 ? -1.0f : 1.0f) * mag(g);
            const std::uint16_t dh = fp16(d).bits;
            std::memcpy(blk, &dh, 2);
            if (t == kq::ggml::type::q4_1) {
                const std::uint16_t mh = fp16(off(g)).bits;
                std::memcpy(blk + 2, &mh, 2);
            }
        }
    return kq::ggml_weights::owning(t, std::move(bytes), rows, cols);
}

}  // namespace

TEST_CASE("cuda::gemv dense f32 and bf16 weights", "[cuda][gemv][gpu]") {
    KITE_NEED_GPU();
    struct shape {
        index_t rows, cols;
    };
    for (const shape s : {shape{1, 64}, shape{7, 300}, shape{7, 301}, shape{33, 1000}}) {
        const auto w = kite::test::quant::grouped_weights(s.rows, s.cols, 11 + s.cols);
        const auto f32 = kq::f32{}.quantize(w.view());
        const auto b16 = kq::dense<bf16>{}.quantize(w.view());
        for (const int batch : {1, 5}) {
            check_format("f32", f32, batch, batch == 5, 100 + s.cols);
            check_format("bf16", b16, batch, batch == 1, 200 + s.cols);
        }
    }
}

TEST_CASE("cuda::gemv int8_rows (absmax<8>)", "[cuda][gemv][gpu]") {
    KITE_NEED_GPU();
    struct shape {
        index_t rows, cols;
    };
    for (const shape s : {shape{1, 16}, shape{7, 300}, shape{7, 301}, shape{4096, 512}}) {
        const auto w = kq::absmax<8>{}.quantize(kite::test::quant::grouped_weights(s.rows, s.cols, 21 + s.rows).view());
        for (const int batch : {1, 5}) check_format("int8_rows", w, batch, batch == 1, 300 + s.cols);
    }
}

TEST_CASE("cuda::gemv int4_g128: symmetric / asymmetric, float / fp16 scales", "[cuda][gemv][gpu]") {
    KITE_NEED_GPU();
    struct shape {
        index_t rows, cols;
    };
    for (const shape s : {shape{1, 128}, shape{7, 300}, shape{7, 301}, shape{33, 1000}, shape{4096, 4096}}) {
        const auto w = kite::test::quant::grouped_weights(s.rows, s.cols, 31 + s.cols);
        const auto sym_f = kq::absmax<4, 128>{}.quantize(w.view());
        const auto sym_h = kq::absmax<4, 128, fp16>{}.quantize(w.view());
        const auto asym_f = kq::zero_point<4, 128>{}.quantize(w.view());
        const auto asym_h = kq::zero_point<4, 128, fp16>{}.quantize(w.view());
        for (const int batch : {1, 5}) {
            check_format("int4_g128 symmetric float", sym_f, batch, batch == 5, 400 + s.cols);
            check_format("int4_g128 symmetric fp16", sym_h, batch, batch == 1, 500 + s.cols);
            check_format("int4_g128 asymmetric float", asym_f, batch, batch == 1, 600 + s.cols);
            check_format("int4_g128 asymmetric fp16", asym_h, batch, batch == 5, 700 + s.cols);
        }
    }
}

TEST_CASE("cuda::gemv int4 symmetric on tall matrices, batch 1..8, ragged columns", "[cuda][gemv][gpu]") {
    // Tall matrices take the one-wave batch-1 shape, and, with detail::set_int4_tensor_cores(true),
    // the tensor-core kernel (at least 16 x SMs rows, more than 7 groups of columns): both paths
    // run here. 1000 and 1100 columns end in a partial group; 4250 rows (>= 32 x 132) also take
    // the tensor-core kernel's two-tile blocks at batch 1..2 on an H200 (a partial last block).
    KITE_NEED_GPU();
    struct shape {
        index_t rows, cols;
    };
    struct restore_switch {  // the previous setting, also when a check throws
        bool was = kcu::detail::int4_tensor_cores();
        ~restore_switch() { kcu::detail::set_int4_tensor_cores(was); }
    } restore;
    for (const bool tc : {false, true}) {
        kcu::detail::set_int4_tensor_cores(tc);
        const std::string path = tc ? " (tall, tc)" : " (tall, cuda cores)";
        for (const shape s : {shape{2180, 1000}, shape{2500, 1100}, shape{4250, 1000}}) {
            const auto w = kite::test::quant::grouped_weights(s.rows, s.cols, 41 + s.cols);
            const auto sym_f = kq::absmax<4, 128>{}.quantize(w.view());
            const auto sym_h = kq::absmax<4, 128, fp16>{}.quantize(w.view());
            for (int batch = 1; batch <= 8; ++batch) {
                INFO(s.rows << " x " << s.cols << path << ", batch " << batch);
                check_format("int4_g128 symmetric float" + path, sym_f, batch, batch % 2 == 1, 900 + s.cols + batch);
                check_format("int4_g128 symmetric fp16" + path, sym_h, batch, batch % 2 == 0, 950 + s.cols + batch);
            }
        }
    }
}

TEST_CASE("cuda::gemv GGUF Q4_0, Q4_1, Q8_0 blocks", "[cuda][gemv][gpu]") {
    KITE_NEED_GPU();
    struct shape {
        index_t rows, cols;
    };
    using kq::ggml::type;
    for (const shape s : {shape{1, 32}, shape{7, 96}, shape{7, 320}, shape{4096, 1024}}) {
        for (const type t : {type::q4_0, type::q4_1, type::q8_0}) {
            const auto w = random_gguf(t, s.rows, s.cols, 41 + s.cols + static_cast<int>(t));
            for (const int batch : {1, 5})
                check_format(std::string(kq::ggml::name(t)), w, batch, batch == 5, 800 + s.cols);
        }
    }
    // Also the Q8_0 that kite's ggml_blocks quantizer writes from float weights.
    const auto w = kq::ggml_blocks{}.quantize(kite::test::quant::grouped_weights(65, 256, 5).view());
    check_format("Q8_0 (ggml_blocks)", w, 3, true, 900);
}

TEST_CASE("cuda::gemv batch 1..8 give the same rows as batch 1", "[cuda][gemv][gpu]") {
    KITE_NEED_GPU();
    const auto w = kq::absmax<4, 128, fp16>{}.quantize(kite::test::quant::grouped_weights(70, 640, 3).view());
    const kcu::device_matrix dm = kcu::upload(w);
    const auto x = kite::test::quant::activations(8 * 640, 77);
    for (int batch = 1; batch <= 8; ++batch) {
        const auto y = run_gemv(dm.view(), x, batch, {});
        for (int t = 0; t < batch; ++t) {
            const std::vector<float> xt(x.begin() + t * 640, x.begin() + (t + 1) * 640);
            const auto y1 = run_gemv(dm.view(), xt, 1, {});
            kite::test::running_max diff;  // a NaN sticks (std::max would drop it)
            for (int r = 0; r < 70; ++r) diff.add(std::abs(static_cast<double>(y[t * 70 + r]) - y1[r]), r);
            INFO("batch " << batch << " vector " << t);
            CHECK(diff.value() <= 1e-5);  // the same sums; only fp32 rounding of their order may differ
        }
    }
}

TEST_CASE("cuda::gemv rejects bad arguments before any CUDA call", "[cuda][gemv]") {
    // Fake, never dereferenced device addresses: every call below fails its checks first.
    const auto* fake = reinterpret_cast<const void*>(std::uintptr_t{4096});
    auto* yfake = reinterpret_cast<float*>(std::uintptr_t{8192});
    const auto* xfake = reinterpret_cast<const float*>(std::uintptr_t{12288});
    kcu::gemv_weights w;
    w.format = kcu::weight_format::int4_g128;
    w.rows = 4;
    w.cols = 256;
    w.row_bytes = 128;
    w.codes = fake;
    w.scales = fake;
    REQUIRE_THROWS_AS(kcu::gemv(w, xfake, yfake, 0), kite::invalid_argument);
    REQUIRE_THROWS_AS(kcu::gemv(w, xfake, yfake, 9), kite::invalid_argument);
    REQUIRE_THROWS_AS(kcu::gemv(w, nullptr, yfake, 1), kite::invalid_argument);
    REQUIRE_THROWS_AS(kcu::gemv(w, xfake, nullptr, 1), kite::invalid_argument);
    {
        auto v = w;
        v.codes = nullptr;
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    {
        auto v = w;
        v.scales = nullptr;
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    {
        auto v = w;
        v.row_bytes = 64;  // 256 int4 columns need 128 bytes
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    {
        auto v = w;
        v.row_bytes = 136;  // not a multiple of 16
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    {
        auto v = w;
        v.rows = 0;
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    {
        auto v = w;
        v.format = kcu::weight_format::q4_0;
        v.cols = 100;  // not whole GGUF blocks
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    {
        auto v = w;
        v.format = kcu::weight_format::int8_rows;
        v.row_bytes = 256;
        v.zeros = static_cast<const std::uint8_t*>(fake);
        REQUIRE_THROWS_AS(kcu::gemv(v, xfake, yfake, 1), kite::invalid_argument);
    }
    // upload() of float weights to a quantized format is refused before any allocation.
    const matrix<float> m(2, 3);
    REQUIRE_THROWS_AS(kcu::upload(m, kcu::weight_format::int4_g128), kite::invalid_argument);
}
