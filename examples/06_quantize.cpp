// 06_quantize: quantize one weight matrix with each of kite's methods and compare error, size
// and GEMV speed side by side.
//
//   kite-quantize [rows cols] [--dram]      (default 256 x 256; try 1024 1024)
//
// The layer is synthetic but shaped like a real one: inputs with correlated features of very
// different magnitudes plus a few outlier channels (what GPTQ, AWQ and LLM.int8 are built for).
// Error: relative output error ||X (W - Wq)^T|| / ||X W^T|| on the calibration inputs and on
// held-out inputs. At this size the weights sit in cache, so the GEMV column measures compute;
// --dram adds batch-1 GEMV timings of a 4096 x 4096 layer streamed from memory (rotating through
// copies of the weights totalling at least 256 MB), where the smaller formats pay off.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kite/quant.hpp"

#include "cli.hpp"

namespace q = kite::quant;
using kite::index_t;

namespace {

/// A distribution of layer inputs: a low-dimensional subspace with per-channel gains, noise,
/// and three outlier channels.
struct input_model {
    kite::matrix<float> basis;  // [r][k]
    std::vector<float> gain;    // [k]

    input_model(index_t k, std::mt19937& g) : basis(32, k), gain(k) {
        std::normal_distribution<float> nd;
        for (auto& v : basis.flat()) v = nd(g) / std::sqrt(32.0f);
        for (auto& v : gain) v = std::exp(std::uniform_real_distribution<float>(-1.0f, 1.0f)(g));
    }
    /// n tokens [n][k].
    kite::matrix<float> sample(index_t n, std::mt19937& g) const {
        std::normal_distribution<float> nd;
        const index_t r = basis.rows(), k = basis.cols();
        kite::matrix<float> X(n, k);
        std::vector<float> z(r);
        for (index_t t = 0; t < n; ++t) {
            for (auto& v : z) v = nd(g);
            for (index_t c = 0; c < k; ++c) {
                float s = 0.3f * nd(g);
                for (index_t j = 0; j < r; ++j) s += z[j] * basis(j, c);
                X(t, c) = s * gain[c];
            }
            for (index_t c : {3u, 77u, 200u}) X(t, c % k) = (t % 2 ? 1.0f : -1.0f) * 25.0f;
        }
        return X;
    }
};

/// ||X (W - Wq)^T|| / ||X W^T|| in double.
double rel_error(const kite::matrix<float>& W, const kite::matrix<float>& Wq, const kite::matrix<float>& X) {
    const Eigen::MatrixXd x = kite::as_eigen(X).cast<double>(), w = kite::as_eigen(W).cast<double>();
    const Eigen::MatrixXd d = w - kite::as_eigen(Wq).cast<double>();
    return std::sqrt((x * d.transpose()).squaredNorm() / (x * w.transpose()).squaredNorm());
}

/// Median time of y = W x on one thread (one thread keeps the numbers steady on a shared machine).
template <class F>
double gemv_us(const F& w, const std::vector<float>& x) {
    std::vector<float> y(w.rows());
    std::vector<double> ts;
    for (int rep = 0; rep < 21; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 10; ++i) q::gemv(w, x, y, 1);
        ts.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 10);
    }
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

template <class M>
void row(const char* label, const M& method, const kite::matrix<float>& W, const kite::matrix<float>& Xcal,
         const kite::matrix<float>& Xeval, const std::vector<float>& x, double f32_us) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto w = q::quantize(method, W, Xcal);
    const double qs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto d = q::dequantize(w);
    const double us = gemv_us(w, x);
    std::printf("| %-24s | %8.5f | %8.5f | %6.3f | %5.2f | %8.3f | %7.1f | %5.2fx |\n", label, rel_error(W, d, Xcal),
                rel_error(W, d, Xeval), w.bytes() / 1e6, 8.0 * double(w.bytes()) / double(W.rows() * W.cols()), qs,
                us, f32_us / us);
}

/// Batch-1 GEMV of a large layer streamed from DRAM: median over calls that each use the next of
/// several copies of the weights (>= 256 MB together), on one thread.
template <class M>
double dram_gemv_us(const M& method, const kite::matrix<float>& W, const std::vector<float>& x) {
    using F = typename M::format;
    const F w0 = q::quantize(method, W);
    const std::size_t copies = std::max<std::size_t>(2, ((std::size_t{256} << 20) + w0.bytes() - 1) / w0.bytes());
    std::vector<F> ws;
    for (std::size_t i = 0; i < copies; ++i) ws.push_back(w0.clone());
    std::vector<float> y(W.rows());
    std::vector<double> ts;
    for (std::size_t i = 0; i < 4 * copies; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        q::gemv(ws[i % copies], x, y, 1);
        ts.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-quantize",
                          "Every quantization method on one random layer: output error, size, GEMV speed.");
    auto& m_arg = cli.positional<index_t>("ROWS", "rows (out_features) of the layer", 256);
    auto& k_arg = cli.positional<index_t>("COLS", "columns (in_features); give both or neither", 256);
    const bool& dram = cli.flag("--dram", "also time a 4096 x 4096 GEMV streamed from DRAM");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        if (m_arg.given() != k_arg.given()) throw kite::cli::usage_error("give both ROWS and COLS, or neither");
        // The layer and its calibration set are dense float matrices: keep them within reason.
        if (*m_arg == 0 || *k_arg == 0 || *m_arg > 65536 || *k_arg > 65536)
            throw kite::cli::usage_error("ROWS and COLS: expected 1..65536, got " + std::to_string(*m_arg) + " x " +
                                         std::to_string(*k_arg));
        const index_t m = *m_arg, k = *k_arg;
        std::mt19937 g(2026);
        std::normal_distribution<float> nd(0.0f, 0.02f);
        kite::matrix<float> W(m, k);
        for (auto& v : W.flat()) v = nd(g);
        // calibration inputs (what the layer sees): GPTQ needs many more tokens than columns, or its
        // Hessian estimate is noisy and the compensation fits the calibration set, not the layer
        const input_model dist(k, g);
        const auto Xcal = dist.sample(4 * k, g);
        const auto Xeval = dist.sample(256, g);
        std::vector<float> x(Xeval.row(0).begin(), Xeval.row(0).end());

        std::printf("W: %zu x %zu, calibration: %zu tokens, kernels: %s, gemv on 1 thread (cache resident)\n\n", m, k,
                    Xcal.rows(), q::arch::name<q::arch::best>());
        std::printf("| %-24s | %8s | %8s | %6s | %5s | %8s | %7s | %6s |\n", "method", "err cal", "err eval", "MB", "bits",
                    "quant s", "gemv us", "vs f32");
        std::printf("|--------------------------|----------|----------|--------|-------|----------|---------|--------|\n");
        const double f32_us = gemv_us(q::quantize(q::f32{}, W), x);
        row("f32", q::f32{}, W, Xcal, Xeval, x, f32_us);
        row("bf16", q::dense<kite::bf16>{}, W, Xcal, Xeval, x, f32_us);
        row("absmax<8> (per row)", q::absmax<8>{}, W, Xcal, Xeval, x, f32_us);
        row("llm_int8 (W8A8)", q::llm_int8{}, W, Xcal, Xeval, x, f32_us);
        row("absmax<4, 128>", q::absmax<4, 128>{}, W, Xcal, Xeval, x, f32_us);
        row("zero_point<4, 128>", q::zero_point<4, 128>{}, W, Xcal, Xeval, x, f32_us);
        row("gptq<4, 128>", q::gptq<4, 128>{}, W, Xcal, Xeval, x, f32_us);
        row("gptq<4, 128> act-order", q::gptq<4, 128>{.act_order = true}, W, Xcal, Xeval, x, f32_us);
        row("awq<4, 128>", q::awq<4, 128>{}, W, Xcal, Xeval, x, f32_us);
        std::printf("\nerr: relative output error on the calibration / held-out inputs; bits: storage bits per\n"
                    "weight; llm_int8 rounds activations to int8 and keeps the outlier channels in 16-bit.\n");

        if (dram) {
            const index_t n = 4096;
            kite::matrix<float> Wb(n, n);
            for (auto& v : Wb.flat()) v = nd(g);
            std::vector<float> xb(n);
            for (auto& v : xb) v = nd(g) * 50.0f;
            const double base = dram_gemv_us(q::f32{}, Wb, xb);
            std::printf("\nbatch-1 GEMV, 4096 x 4096 streamed from DRAM, 1 thread (median):\n");
            auto line = [&](const char* label, double us) {
                std::printf("  %-20s %8.0f us  %5.2fx f32\n", label, us, base / us);
            };
            line("f32", base);
            line("bf16", dram_gemv_us(q::dense<kite::bf16>{}, Wb, xb));
            line("int8 (absmax<8>)", dram_gemv_us(q::absmax<8>{}, Wb, xb));
            line("int4 g128", dram_gemv_us(q::zero_point<4, 128, kite::fp16>{}, Wb, xb));
        }
        return 0;
    });
}
