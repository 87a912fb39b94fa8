// Quantization quality on real trained weights: method x bits x group table for the 28 linear
// layers of the aidreams260K tiny Llama, calibrated on the inputs those layers see while the
// model generates its own text (2048 tokens), evaluated on 512 other tokens.
//
//   bench_quant_quality [path/to/aidreams260K.bin [calibration sequences]]
//       (default: $KITE_DATA/aidreams260k/aidreams260K.bin and 16 sequences of 128 tokens,
//       as in tests/quant/test_real_weights.cpp)
//
// Columns: relative output error ||X (W - Wq)^T|| / ||X W^T|| pooled over the layers on the
// calibration and held-out inputs; the squared-error ratio to round-to-nearest with the same
// bits and grid shape; storage bytes over the 28 layers and bits per weight. llm_int8 is
// measured through its kernel, so its error includes rounding the activations to int8.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "../tests/quant/aidreams.hpp"
#include "bench_util.hpp"
#include "kite/quant.hpp"

namespace q = kite::quant;
namespace ad = kite::test::aidreams;
using kite::index_t;

namespace {

struct result {
    double cal = 0, cal_out = 0, ev = 0, ev_out = 0;
    std::size_t bytes = 0, weights = 0;
    double seconds = 0;
    double rel_cal() const { return std::sqrt(cal / cal_out); }
    double rel_ev() const { return std::sqrt(ev / ev_out); }
};

/// Output error of Y = X Wq^T computed by the format's own gemm (activation rounding included).
std::pair<double, double> kernel_error(const kite::matrix<float>& w, const q::llm_int8_weights& f,
                                       kite::matrix_view<const float> x) {
    kite::matrix<float> y(x.rows(), w.rows());
    q::gemm(f, x, y);
    const Eigen::MatrixXd X = kite::as_eigen(x).cast<double>();
    const Eigen::MatrixXd ref = X * kite::as_eigen(w).cast<double>().transpose();
    return {(ref - kite::as_eigen(y).cast<double>()).squaredNorm(), ref.squaredNorm()};
}

template <class M>
result evaluate(const std::vector<ad::linear_case>& cs, const M& method) {
    result r;
    for (const auto& c : cs) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto f = q::quantize(method, *c.w, c.calib);
        r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::pair<double, double> ec, ee;
        if constexpr (std::is_same_v<typename M::format, q::llm_int8_weights>) {
            ec = kernel_error(*c.w, f, c.calib);
            ee = kernel_error(*c.w, f, c.eval);
        } else {
            const auto d = q::dequantize(f);
            ec = ad::output_error(*c.w, d, c.calib);
            ee = ad::output_error(*c.w, d, c.eval);
        }
        r.cal += ec.first;
        r.cal_out += ec.second;
        r.ev += ee.first;
        r.ev_out += ee.second;
        r.bytes += f.bytes();
        r.weights += c.w->rows() * c.w->cols();
    }
    return r;
}

void print(const char* method, int bits, const char* group, const result& r, const result* rtn) {
    char ratio[32] = "";
    if (rtn) std::snprintf(ratio, sizeof ratio, "%.3f / %.3f", r.cal / rtn->cal, r.ev / rtn->ev);
    std::printf("| %-26s | %2d | %-7s | %.5f | %.5f | %-13s | %7zu | %5.2f | %6.2f |\n", method, bits, group,
                r.rel_cal(), r.rel_ev(), rtn ? ratio : "", r.bytes, 8.0 * double(r.bytes) / double(r.weights),
                r.seconds);
}

template <int Bits, int G>
void group_rows(const std::vector<ad::linear_case>& cs, const char* gname) {
    const auto rtn_sym = evaluate(cs, q::absmax<Bits, G>{});
    const auto rtn = evaluate(cs, q::zero_point<Bits, G>{});
    const auto gptq = evaluate(cs, q::gptq<Bits, G>{});
    const auto gptq_act = evaluate(cs, q::gptq<Bits, G>{.act_order = true});
    const auto awq = evaluate(cs, q::awq<Bits, G>{});
    print("RTN absmax (symmetric)", Bits, gname, rtn_sym, nullptr);
    print("RTN zero-point", Bits, gname, rtn, &rtn);
    print("GPTQ", Bits, gname, gptq, &rtn);
    print("GPTQ act-order", Bits, gname, gptq_act, &rtn);
    print("AWQ", Bits, gname, awq, &rtn);
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    std::optional<std::filesystem::path> path;
    if (argc > 1) path = argv[1];
    else path = ad::checkpoint_from_env();
    const int cal_seqs = argc > 2 ? std::atoi(argv[2]) : 16;
    if (!path || !std::filesystem::exists(*path)) {
        std::fprintf(stderr,
                     "usage: %s path/to/aidreams260K.bin [calibration sequences] (or set KITE_DATA to the folder "
                     "holding aidreams260k/)\n",
                     argv[0]);
        return 2;
    }
    Eigen::setNbThreads(1);  // many small products: parallelism comes from AWQ's grid search
    const auto m = ad::load(*path);
    if (cal_seqs < 1) {
        std::fprintf(stderr, "calibration sequences = %d; expected at least 1\n", cal_seqs);
        return 2;
    }
    const auto cal = ad::collect(m, cal_seqs, 1, 0.8), ev = ad::collect(m, 4, 2, 0.8);
    const auto cs = ad::cases(m, cal, ev);
    std::printf("host: %s\n", kite::cpu::describe().c_str());
    std::printf("aidreams260K: %zu linear layers, %zu calibration and %zu held-out tokens (sampled from the model, "
                "temperature 0.8)\n\n",
                cs.size(), cs[0].calib.rows(), cs[0].eval.rows());
    std::printf("| %-26s | %-2s | %-7s | %-7s | %-7s | %-13s | %7s | %5s | %6s |\n", "method", "b", "group", "err cal",
                "err eval", "sq. vs RTN", "bytes", "bits", "quant s");
    std::printf("|----------------------------|----|---------|---------|---------|---------------|---------|-------|--------|\n");
    print("f32", 32, "-", evaluate(cs, q::f32{}), nullptr);
    print("bf16", 16, "-", evaluate(cs, q::dense<kite::bf16>{}), nullptr);
    print("llm_int8 (W8A8, outliers)", 8, "row", evaluate(cs, q::llm_int8{}), nullptr);
    group_rows<8, q::per_row>(cs, "row");
    group_rows<8, 128>(cs, "128");
    group_rows<4, q::per_row>(cs, "row");
    group_rows<4, 128>(cs, "128");
    group_rows<4, 64>(cs, "64");
    group_rows<4, 32>(cs, "32");
    std::printf("\nerr: relative output error (RMS) on calibration / held-out tokens; sq. vs RTN: squared error\n"
                "relative to RTN zero-point with the same bits and group (calibration / held-out). In these\n"
                "layers in_features is 64 (172 for w2), so a group of 128 is one group per row, and bytes include\n"
                "layout v1's row padding to whole 64-byte blocks (a 64-column 4-bit row takes 64 bytes, as much\n"
                "as an 8-bit one): at in_features >= 4096 4-bit weights cost 4.0 (per row) to 5.25 (groups\n"
                "of 32, float scales) bits.\n");
    return 0;
}
