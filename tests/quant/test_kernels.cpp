// Every GEMV/GEMM kernel (portable and AVX-512) against the float64 dequantize-then-multiply
// oracle: odd shapes, adversarial rows, every GEMM tile class, rows of more than 64 scale groups
// (7B-class widths), one and two threads.
#include <algorithm>
#include <cmath>
#include <span>
#include <utility>
#include <vector>

#include "kite/core/cpu.hpp"
#include "kite/quant.hpp"
#include "kite_test.hpp"
#include "quant_test_util.hpp"

namespace q = kite::quant;
namespace qt = kite::test::quant;
using kite::index_t;

namespace {

struct shape {
    index_t m, k;
};
const shape shapes[] = {{1, 1}, {3, 7}, {5, 31}, {4, 32}, {7, 33}, {9, 100}, {13, 129}, {17, 200}, {6, 257}, {33, 515}};

/// Calls fn(tag) for every instruction-set tag that has kernels of its own compiled here: the
/// portable ones and AVX-512 (avx512_vnni adds no GEMV/GEMM kernel for these formats, only the
/// int8-activation path; arch::best, which may be it, runs the two-thread GEMMs).
template <class Fn>
void for_each_arch(Fn&& fn) {
    fn(q::arch::generic{});
#if KITE_QUANT_AVX512
    fn(q::arch::avx512{});
#endif
}

/// Two threads only when there are threads (the serial build runs every call on one).
#if defined(KITE_WITH_OPENMP)
constexpr bool threaded = true;
#else
constexpr bool threaded = false;
#endif

/// Batch sizes that reach every tile class of the GEMM (kite/quant/detail/gemm_kernels.hpp).
/// The batch is padded to nv = ceil(b / lanes) vectors and the row tile is chosen by
/// min(nv, 4): four classes (nv = 1, 2, 3, >= 4; 2..16, 17..32, 33..48, 49.. rows with 16 lanes).
/// With nv >= 4 the tokens run in chunks of 4 vectors plus a remainder of nv % 4 = 0, 1, 2, 3
/// vectors. The first three classes get a full last vector and one with a single token;
/// b = 1 takes the GEMV path.
std::vector<index_t> gemm_batches() {
    constexpr index_t L = q::detail::gemm_lanes;
    std::vector<index_t> b = {1, 2, L, L + 1, 2 * L, 2 * L + 1, 3 * L,  // nv = 1, 2, 3
                              3 * L + 1, 4 * L + 3, 6 * L - 1, 7 * L};  // nv = 4, 5, 6, 7
    std::sort(b.begin(), b.end());
    b.erase(std::unique(b.begin(), b.end()), b.end());
    return b;
}

/// |kernel - oracle| in units of the oracle's rounding bound over a [batch][out] result whose
/// oracle is the first got.rows() rows of `o` (NaN-safe: a non-finite output where the oracle is
/// finite fails).
kite::test::difference bound_units(const kite::matrix<float>& got, const qt::oracle_product& o) {
    return kite::test::max_diff(
        got.view(), o.y.view().rows_slice(0, got.rows()),
        [&](std::size_t i, double a, double b) { return std::abs(a - b) / o.bound.flat()[i]; },
        "|kernel - oracle| / rounding bound");
}

/// gemv(w, x) with every arch and both kernel tunings (kite::cpu: Intel's and Zen's row tiles
/// and prefetch, each forced whatever the host) on one and two threads against the float64
/// oracle (each arch has its own gemv_rows over a range of rows); d = dequantize64(w).
template <class F>
void check_gemv(const F& w, const kite::matrix<double>& d, std::span<const float> x) {
    const auto o = qt::oracle_gemm(d, kite::matrix_view<const float>(x.data(), 1, x.size()));
    auto run = [&](auto arch, int threads) {
        kite::matrix<float> y(1, w.rows(), -1.0f);
        q::gemv(w, x, y.row(0), threads, arch);
        INFO("gemv, arch " << q::arch::name<decltype(arch)>() << ", tuning "
                           << kite::cpu::name(kite::cpu::active_tuning()) << ", m = " << w.rows()
                           << ", k = " << w.cols() << ", threads " << threads << " (indices are (0, row))");
        CHECK(bound_units(y, o) <= 1.0);
    };
    for (const auto t : {kite::cpu::tuning::intel, kite::cpu::tuning::zen}) {
        const kite::cpu::scoped_tuning force(t);
        for_each_arch([&](auto arch) {
            run(arch, 1);
            if (threaded) run(arch, 2);
        });
    }
}

template <class F>
void check_gemv(const F& w, const kite::matrix<double>& d, std::uint64_t seed) {
    auto x = kite::test::randn(w.cols(), seed);
    if (w.cols() > 4) x[3] = 0.0f;
    check_gemv(w, d, std::span<const float>(x));
}

/// Random activations X [b][k] and their float64 oracle product with the weights d.
struct batch {
    kite::matrix<float> X;
    qt::oracle_product o;
};

batch make_batch(const kite::matrix<double>& d, index_t b, std::uint64_t seed) {
    kite::matrix<float> X(b, d.cols());
    const auto v = qt::activations(b * d.cols(), seed);
    std::copy(v.begin(), v.end(), X.flat().begin());
    auto o = qt::oracle_gemm(d, X.view());
    return {std::move(X), std::move(o)};
}

/// gemm(w, X) for the first b rows of x.X with every arch against the oracle (the oracle of a
/// token does not depend on the others, so one batch serves every b); two threads with
/// arch::best only: the split over row tiles (gemm_rows) is the same code for every arch, which
/// differs only in decode_row of absolute rows.
template <class F>
void check_gemm(const F& w, const batch& x, index_t b) {
    const auto X = x.X.view().rows_slice(0, b);
    auto run = [&](auto arch, int threads) {
        kite::matrix<float> Y(b, w.rows(), -1.0f);
        q::gemm(w, X, Y.view(), threads, arch);
        INFO("gemm, arch " << q::arch::name<decltype(arch)>() << ", m = " << w.rows() << ", k = " << w.cols()
                           << ", b = " << b << ", threads " << threads << " (indices are (token, row))");
        CHECK(bound_units(Y, x.o) <= 1.0);
    };
    for_each_arch([&](auto arch) { run(arch, 1); });
    if (threaded) run(q::arch::best{}, 2);
}

}  // namespace

TEMPLATE_TEST_CASE("gemv and gemm equal the dequantize-then-multiply oracle", "[quant][kernels]",
                   (q::absmax<8>), (q::absmax<4, 32, kite::fp16>), (q::zero_point<4, 128>),
                   (q::absmax<4>), (q::zero_point<8, 64, kite::fp16>), (q::zero_point<8, q::per_tensor>),
                   (q::absmax<4, q::per_tensor>), (q::zero_point<4, 64>), (q::f32), (q::dense<kite::bf16>)) {
    std::uint64_t seed = 100;
    const auto batches = gemm_batches();
    for (const auto& s : shapes) {
        const auto W = qt::weights(s.m, s.k, ++seed);
        const auto w = q::quantize(TestType{}, W);
        // dequantize() equals the element-wise oracle exactly (same single rounding)
        CHECK(kite::test::max_abs_diff(q::dequantize(w).view(), q::reference::dequantize(w).view()) == 0.0);
        const auto d = qt::dequantize64(w);
        check_gemv(w, d, ++seed);
        const auto x = make_batch(d, batches.back(), ++seed);
        for (index_t b : batches) check_gemm(w, x, b);
    }
}

// The AVX-512 GEMV stages the scales and zeros of at most 64 groups of a row at a time (8-bit:
// an outer loop over groups g0, g0 + 64, ...; 4-bit: chunks of 2048 columns), so rows of more
// than 64 groups -- every 7B-class layer -- take paths that shorter rows never reach: k > 2048
// at group 32, > 4096 at group 64, > 8192 at group 128. Every group size, 4 and 8 bits, with
// and without zero points, float and fp16 scales, GEMV and GEMM, on every arch.
TEMPLATE_TEST_CASE("gemv and gemm on rows of more than 64 scale groups equal the float64 oracle",
                   "[quant][kernels][long_rows]",
                   (q::absmax<4, 32, kite::fp16>), (q::absmax<4, 64>), (q::absmax<4, 128, kite::fp16>),
                   (q::absmax<4>), (q::absmax<4, q::per_tensor, kite::fp16>),
                   (q::zero_point<4, 32>), (q::zero_point<4, 64, kite::fp16>), (q::zero_point<4, 128>),
                   (q::zero_point<4, q::per_row, kite::fp16>), (q::zero_point<4, q::per_tensor>),
                   (q::absmax<8, 32>), (q::absmax<8, 64, kite::fp16>), (q::absmax<8, 128>),
                   (q::absmax<8, q::per_row, kite::fp16>), (q::absmax<8, q::per_tensor>),
                   (q::zero_point<8, 32, kite::fp16>), (q::zero_point<8, 64>), (q::zero_point<8, 128, kite::fp16>),
                   (q::zero_point<8>), (q::zero_point<8, q::per_tensor, kite::fp16>)) {
    using F = typename TestType::format;
    constexpr index_t L = q::detail::gemm_lanes;
    struct long_case {
        index_t k, b;  // columns, GEMM batch
    };
    // Llama 2 7B (4096, 11008), Mistral 7B (14336), 8192 (exactly 64 groups of 128), and two
    // widths that are no multiple of 16, of a code block or of a group: 2113 = 66 groups of 32
    // plus a 67th of one column (the 8-bit tail in the second stage of groups; a second 4-bit
    // chunk of one partial block), 8195 = 64 groups of 128 plus a 65th of 3 columns.
    // The batches are small (the oracle costs b * m * k; the tile classes have their sweep in
    // the test above) but take the GEMM through all four tile classes at k > 2048.
    const long_case cases[] = {{2113, 3 * L + 1}, {4096, 2 * L + 1}, {8192, L + 1},
                               {8195, 2}, {11008, 3}, {14336, 2}};
    if constexpr (F::group > 0) {
        // the widths do reach past 64 groups, at this group size too
        CHECK(F::groups_for(cases[5].k) > 64);
        CHECK(F::groups_for(cases[3].k) > 64);
    }
    // 13 rows: AVX-512 GEMV row tiles of 8, 4 and 1 (two threads: 8 rows and 4 + 1); GEMM row
    // tiles split over two threads for all but the widest tile.
    constexpr index_t m = 13;
    std::uint64_t seed = 500;
    for (const auto& c : cases) {
        const auto w = q::quantize(TestType{}, qt::grouped_weights(m, c.k, ++seed));
        const auto d = qt::dequantize64(w);
        INFO("k = " << c.k << ": " << w.groups_per_row() << " scale groups per row");
        check_gemv(w, d, ++seed);
        check_gemm(w, make_batch(d, c.b, ++seed), c.b);
    }
}

TEST_CASE("4-bit GEMM on rows shorter than a code block reads no scale or zero past the row", "[quant][kernels]") {
    // 40 columns in groups of 32: a 128-column code block spans groups 0..3 of which the row has
    // 2. The batched path decodes whole blocks; with 64 rows the zero table is exactly 128 bytes,
    // so reading group 3 of the last row would overflow it (AddressSanitizer reports it).
    const auto W = qt::weights(64, 40, 7);
    const auto w = q::quantize(q::zero_point<4, 32>{}, W);
    REQUIRE(w.zeros().size() == 128);
    const auto d = qt::dequantize64(w);
    const auto x = make_batch(d, 70, 8);
    for (index_t b : {1u, 30u, 70u}) check_gemm(w, x, b);
    check_gemv(w, d, 11);
}

TEST_CASE("kernels with large activations and long rows stay within float rounding", "[quant][kernels]") {
    // 4096 columns of a per-row int8 matrix and x with a large common offset: the zero-point
    // correction (sum q x - z X) must not lose the signal.
    const auto W = qt::weights(8, 4096, 5);
    auto x = kite::test::randn(4096, 6);
    for (auto& v : x) v = v + 30.0f;
    const auto w8 = q::quantize(q::zero_point<8>{}, W);
    const auto w4 = q::quantize(q::zero_point<4, 128, kite::fp16>{}, W);
    const auto d8 = qt::dequantize64(w8), d4 = qt::dequantize64(w4);
    check_gemv(w8, d8, 1);
    check_gemv(w4, d4, 2);
    check_gemv(w8, d8, std::span<const float>(x));
    check_gemv(w4, d4, std::span<const float>(x));
}

TEST_CASE("kernels check shapes", "[quant][errors]") {
    const auto W = qt::weights(4, 10, 1);
    const auto w = q::quantize(q::absmax<4, 32>{}, W);
    std::vector<float> x(9), y(4);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "in_features = 10");
    x.resize(10);
    y.resize(5);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "out_features = 4");
    kite::matrix<float> X(3, 10), Y(3, 5);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemm(w, X, Y), kite::shape_error, "3 x 4");
    kite::matrix<float> X2(3, 11), Y2(3, 4);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemm(w, X2, Y2), kite::shape_error, "11 columns");
    kite::matrix<float> X0(0, 10), Y0(0, 4);
    q::gemm(w, X0, Y0);  // an empty batch is fine
}
