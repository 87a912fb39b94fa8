// RTN, GPTQ and AWQ against the float64 PyTorch reference (tools/quant_reference.py) on the
// committed fixture: integer levels must be equal except at exact rounding ties; GPTQ's error
// feedback makes everything after a tie in the same row legitimately different, so each row is
// compared up to its first disagreement (in processing order), which must be a tie.
#include <cmath>
#include <string>
#include <vector>

#include "kite/quant.hpp"
#include "kite_test.hpp"
#include "kqfx.hpp"
#include "quant_test_util.hpp"

namespace q = kite::quant;
using kite::index_t;
using kite::test::quant::array;

namespace {

const auto& fixtures() {
    static const auto f = kite::test::quant::read_kqfx(kite::test::fixture("quant/reference.kqfx"));
    return f;
}

struct comparison {
    int rows_equal = 0;
    int rows_tie = 0;      // first disagreement at an exact tie
    int rows_differ = 0;   // first disagreement where the reference was not at a tie
    kite::test::running_max worst_tie_distance;
};

/// Compares the levels, scales and zeros of `p` with fixture case `name`.
template <class F>
comparison compare(const F& p, const std::string& name) {
    const auto& fx = fixtures();
    const array& levels = fx.at(name + "/levels");
    const array& scales = fx.at(name + "/scales");
    const array& zeros = fx.at(name + "/zeros");
    const array& tie = fx.at(name + "/tie_distance");
    const index_t m = p.rows(), k = p.cols();
    REQUIRE(levels.dims[0] == m);
    REQUIRE(levels.dims[1] == k);
    std::vector<index_t> order(k);
    for (index_t j = 0; j < k; ++j) order[j] = j;
    if (fx.count(name + "/perm"))
        for (index_t j = 0; j < k; ++j) order[j] = static_cast<index_t>(fx.at(name + "/perm").values[j]);
    const index_t gc = p.group_cols();
    comparison c;
    for (index_t r = 0; r < m; ++r) {
        index_t first = k;
        for (index_t j = 0; j < k && first == k; ++j)
            if (p.level(r, order[j]) != static_cast<int>(levels(r, order[j]))) first = j;
        if (first == k) {
            ++c.rows_equal;
            for (index_t g = 0; g < p.groups_per_row(); ++g) {
                INFO(name << ": row " << r << ", group " << g);
                CHECK(p.scale(r, g) == static_cast<float>(scales(r, g)));
                CHECK(p.zero(r, g) == static_cast<int>(zeros(r, g)));
            }
            continue;
        }
        const index_t col = order[first];
        const double d = tie(r, col);
        INFO(name << ": row " << r << " first differs at column " << col << ": kite " << p.level(r, col)
                  << ", reference " << levels(r, col) << ", distance to a tie " << d
                  << " (group " << col / gc << ")");
        if (d < 1e-9) {
            ++c.rows_tie;
            c.worst_tie_distance.add(d, r);
        } else {
            ++c.rows_differ;
        }
    }
    return c;
}

void require_matches(const comparison& c, const std::string& name) {
    INFO(name << ": rows equal " << c.rows_equal << ", first difference at a tie " << c.rows_tie
              << ", differing " << c.rows_differ);
    CHECK(c.rows_differ == 0);
    CHECK(c.rows_equal >= 6);  // 8 rows: ties are rare, so most rows must agree in full
}

kite::matrix<float> fixture_matrix(const char* name) { return kite::test::quant::to_matrix(fixtures().at(name)); }

template <class M>
void check_case(const M& method, const std::string& name) {
    const auto W = fixture_matrix("W");
    const auto X = fixture_matrix("X");
    const auto p = q::quantize(method, W, X);
    if constexpr (q::is_awq_weights<typename M::format>) {
        const auto& fx = fixtures();
        CHECK(p.alpha() == Approx(fx.at(name + "/grid_index").values[0] / 20.0));
        const auto s = p.input_scales();
        for (index_t j = 0; j < W.cols(); ++j) CHECK(s[j] == static_cast<float>(fx.at(name + "/input_scales").values[j]));
        require_matches(compare(p.weights(), name), name);
    } else {
        require_matches(compare(p, name), name);
    }
}

}  // namespace

TEST_CASE("RTN levels equal PyTorch's", "[quant][fixture]") {
    check_case(q::zero_point<4, 32>{}, "rtn_b4_g32_asym_fp32");
    check_case(q::absmax<8>{}, "rtn_b8_g0_sym_fp32");
    check_case(q::absmax<4, 128, kite::fp16>{}, "rtn_b4_g128_sym_fp16");
}

TEST_CASE("GPTQ levels equal the PyTorch reference of Algorithm 1", "[quant][fixture][gptq]") {
    check_case(q::gptq<4, 32>{}, "gptq_b4_g32_asym_seq_fp32");
    check_case(q::gptq<4, 128>{.act_order = true}, "gptq_b4_g128_asym_act_fp32");
    check_case(q::gptq<4, q::per_row>{.act_order = true}, "gptq_b4_g0_asym_act_fp32");
    check_case(q::gptq<8, 64, q::grid::symmetric>{}, "gptq_b8_g64_sym_seq_fp32");
    check_case(q::gptq<4, 64, q::grid::asymmetric, kite::fp16>{}, "gptq_b4_g64_asym_seq_fp16");
}

TEST_CASE("AWQ's search picks the reference's alpha, scales and levels", "[quant][fixture][awq]") {
    check_case(q::awq<4, 32>{}, "awq_b4_g32");
    check_case(q::awq<4, 128>{}, "awq_b4_g128");
}

TEST_CASE("GPTQ and AWQ reduce the layer's output error on their calibration data", "[quant][gptq][awq]") {
    const auto W = fixture_matrix("W");
    const auto X = fixture_matrix("X");
    auto out_err = [&](const auto& fmt) {
        const auto d = q::dequantize(fmt);
        double e = 0, n = 0;
        for (index_t t = 0; t < X.rows(); ++t)
            for (index_t r = 0; r < W.rows(); ++r) {
                double a = 0, b = 0;
                for (index_t c = 0; c < W.cols(); ++c) {
                    a += double(W(r, c)) * X(t, c);
                    b += double(d(r, c)) * X(t, c);
                }
                e += (a - b) * (a - b);
                n += a * a;
            }
        return std::sqrt(e / n);
    };
    const double rtn = out_err(q::quantize(q::zero_point<4, 32>{}, W));
    const double gptq = out_err(q::quantize(q::gptq<4, 32>{}, W, X));
    const double awq = out_err(q::quantize(q::awq<4, 32>{}, W, X));
    INFO("relative output error: rtn " << rtn << ", gptq " << gptq << ", awq " << awq);
    CHECK(gptq < 0.7 * rtn);
    CHECK(awq <= rtn);
}

TEST_CASE("GPTQ and AWQ check their inputs", "[quant][errors]") {
    const auto W = kite::test::quant::weights(4, 64, 3);
    kite::matrix<float> X(10, 63);
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::gptq<4, 32>{}, W, X), kite::shape_error, "in_features = 64");
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::awq<4, 32>{}, W, X), kite::shape_error, "in_features = 64");
    kite::matrix<float> X2(10, 64, 1.0f);
    X2(2, 5) = std::nanf("");
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::gptq<4, 32>{}, W, X2), kite::invalid_argument, "X[2][5]");
    X2(2, 5) = 0.0f;
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::gptq<4, 32>{.damp = 0.0}, W, X2), kite::invalid_argument, "damp");
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::gptq<4, 64>{.block_size = 96}, W, X2), kite::invalid_argument,
                                   "multiple of the group size");
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::awq<4, 32>{.grid_points = 0}, W, X2), kite::invalid_argument,
                                   "grid_points");
    // all-zero calibration inputs: every input is dead, GPTQ still returns (all-zero weights)
    kite::matrix<float> Z(10, 64, 0.0f);
    const auto g = q::quantize(q::gptq<4, 32>{}, W, Z);
    for (index_t r = 0; r < 4; ++r)
        for (index_t c = 0; c < 64; ++c) CHECK(g.value(r, c) == 0.0f);
}

TEMPLATE_TEST_CASE("awq_weights products equal their oracle", "[quant][kernels][awq]", (q::awq<4, 128>),
                   (q::awq<8, 32, kite::fp16>)) {
    const auto W = kite::test::quant::weights(13, 200, 9);
    kite::matrix<float> X(40, 200);
    auto v = kite::test::randn(40 * 200, 10);
    std::copy(v.begin(), v.end(), X.flat().begin());
    const auto w = q::quantize(TestType{}, W, X);
    static_assert(q::weight_format<typename TestType::format>);
    auto x = kite::test::randn(200, 11);
    std::vector<float> y(13), yr(13);
    q::gemv(w, x, y, 2);
    q::reference::gemv(w, x, yr);
    const auto terms = kite::test::quant::rounding_terms(w);
    for (index_t r = 0; r < 13; ++r) CHECK(std::abs(y[r] - yr[r]) <= kite::test::quant::tolerance(terms, r, x.data()));
    kite::matrix<float> Y(40, 13), Yr(40, 13);
    q::gemm(w, X, Y, 2);
    q::reference::gemm(w, X, Yr);
    for (index_t t = 0; t < 40; ++t)
        for (index_t r = 0; r < 13; ++r)
            CHECK(std::abs(Y(t, r) - Yr(t, r)) <= kite::test::quant::tolerance(terms, r, X.row(t).data()));
}
