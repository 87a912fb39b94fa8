// 00_core_tour: a first look at kite's core — aligned matrices, Eigen interop, SIMD kernels
// checked against their scalar twins, bf16/fp16 storage, and a clear error on bad input.
#include <kite/kite.hpp>

#include <chrono>
#include <cstdio>
#include <random>

#include "cli.hpp"

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-core-tour", "A first look at kite's core: aligned matrices, Eigen interop, SIMD kernels, bf16/fp16, errors.");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        // 1. A row-major matrix of 10,000 random 384-d vectors (the size of MiniLM embeddings).
        const kite::index_t n = 10000, d = 384;
        kite::matrix<float> base(n, d, kite::uninitialized);
        std::mt19937 rng(42);
        std::normal_distribution<float> normal;
        for (auto& x : base.flat()) x = normal(rng);

        // 2. Nearest neighbour of row 0 by squared L2, with the SIMD kernel and its scalar twin.
        auto nearest = [&](auto&& dist) {
            kite::index_t best = 1;
            float best_d = dist(base.row(0).data(), base.row(1).data(), d);
            for (kite::index_t i = 2; i < n; ++i) {
                const float v = dist(base.row(0).data(), base.row(i).data(), d);
                if (v < best_d) best_d = v, best = i;
            }
            return std::pair{best, best_d};
        };
        auto t0 = std::chrono::steady_clock::now();
        auto [fast_id, fast_d] = nearest([](auto a, auto b, auto m) { return kite::simd::l2_sq(a, b, m); });
        auto t1 = std::chrono::steady_clock::now();
        auto [ref_id, ref_d] = nearest([](auto a, auto b, auto m) { return kite::simd::scalar::l2_sq(a, b, m); });
        auto t2 = std::chrono::steady_clock::now();
        const auto us = [](auto a, auto b) { return std::chrono::duration<double, std::micro>(b - a).count(); };
        std::printf("nearest to row 0 among %zu vectors of dim %zu:\n", n, d);
        std::printf("  simd   : row %zu, squared L2 %.4f  (%.0f us)\n", fast_id, fast_d, us(t0, t1));
        std::printf("  scalar : row %zu, squared L2 %.4f  (%.0f us, the double-precision oracle)\n",
                    ref_id, ref_d, us(t1, t2));

        // 3. The same matrix through Eigen, no copy.
        auto e = kite::as_eigen(base);
        std::printf("Eigen view: %ld x %ld, mean %.5f\n", static_cast<long>(e.rows()),
                    static_cast<long>(e.cols()), e.mean());

        // 4. bf16 and fp16 storage: half the bytes, round-to-nearest-even like PyTorch.
        const float x = 0.1f;
        std::printf("0.1 as bf16 = %.8f (0x%04x), as fp16 = %.8f (0x%04x)\n", kite::bf16(x).to_float(),
                    kite::bf16(x).bits, kite::fp16(x).to_float(), kite::fp16(x).bits);

        // 5. Bad input is a kite::error that names the value and the expectation.
        try {
            std::vector<float> a(384), b(383);
            kite::simd::dot(a, b);
        } catch (const kite::error& err) {
            std::printf("error, as expected: %s\n", err.what());
        }
        std::printf("threads available to kite::parallel_for: %d\n", kite::max_threads());
        return fast_id == ref_id ? 0 : 1;
    });
}
