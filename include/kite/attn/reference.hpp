#pragma once
/// @file kite/attn/reference.hpp
/// The reference attention kernel: materializes the full [q_len][kv_len] score matrix of each
/// (sequence, head) in double precision, applies masks and ALiBi, and takes an exact softmax.
/// It is the oracle the fast kernels are tested against, and its memory grows with
/// q_len * kv_len (quadratically in prefill), which flash avoids.

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "kite/attn/concepts.hpp"
#include "kite/attn/detail/checks.hpp"
#include "kite/core/half.hpp"
#include "kite/core/parallel.hpp"

namespace kite::attn {

/// Reference (score-materializing, double precision) attention kernel.
struct reference {
    static constexpr const char* name = "reference";

    /// Prefill attention. q, o: [batch][q_seq][n_q][head_dim]; kv: a kv_view with the same
    /// batch; q_lens: [batch] queries per sequence (empty: q_seq each).
    template <head_layout L, kv_view KV>
    static void prefill(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o,
                        const options& opt, std::span<const index_t> q_lens = {}) {
        const float scale = detail::check_prefill<L>("reference::prefill", q, kv, o, opt, q_lens);
        run<L>(q, kv, o, opt, q_lens, scale);
    }

    /// Decode attention: one query per sequence at position length(b) - 1, seeing the whole
    /// cache. q, o: [batch][n_q][head_dim].
    template <head_layout L, kv_view KV>
    static void decode(tensor_view<const float, 3> q, const KV& kv, tensor_view<float, 3> o,
                       const options& opt) {
        const float scale = detail::check_decode<L>("reference::decode", q, kv, o, opt);
        run<L>(detail::as_single_query(q), kv, detail::as_single_query(o), opt, {}, scale);
    }

    /// Scratch bytes of one call: one double score matrix per thread.
    static index_t workspace_bytes(index_t q_len, index_t kv_len, int threads) noexcept {
        return static_cast<index_t>(std::max(threads, 1)) * q_len * kv_len * sizeof(double);
    }

private:
    template <head_layout L, kv_view KV>
    static void run(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o, const options& opt,
                    std::span<const index_t> q_lens, float scale) {
        const index_t batch = q.extent(0), q_seq = q.extent(1), n_q = q.extent(2), d = q.extent(3);
        const index_t n_kv = kv.kv_heads();
        parallel_for(
            0, batch * n_q,
            [&](std::size_t item) {
                const index_t b = item / n_q, h = item % n_q;
                const index_t kvh = L::kv_head(h, n_q, n_kv);
                const index_t ql = detail::q_length(q_lens, q_seq, b), kl = kv.length(b);
                const double slope = opt.alibi_slopes.empty() ? 0.0 : opt.alibi_slopes[h];
                std::vector<double> s(ql * kl);  // [query][key]: the materialized scores
                std::vector<double> acc(d);
                for (index_t i = 0; i < ql; ++i) {
                    const double qpos = static_cast<double>(kl) - static_cast<double>(ql) + static_cast<double>(i);
                    const float* qi = q.ptr(b, i, h);
                    double* si = s.data() + i * kl;
                    double mx = -std::numeric_limits<double>::infinity();
                    for (index_t j = 0; j < kl; ++j) {
                        if (opt.mask == mask::causal && static_cast<double>(j) > qpos) {
                            si[j] = -std::numeric_limits<double>::infinity();
                            continue;
                        }
                        const auto* kj = detail::kv_row<true>(kv, b, kvh, j);
                        double dot = 0;
                        for (index_t c = 0; c < d; ++c) dot += static_cast<double>(qi[c]) * to_float(kj[c]);
                        si[j] = scale * dot + slope * (static_cast<double>(j) - qpos);
                        mx = std::max(mx, si[j]);
                    }
                    std::fill(acc.begin(), acc.end(), 0.0);
                    double sum = 0;
                    if (mx > -std::numeric_limits<double>::infinity()) {
                        for (index_t j = 0; j < kl; ++j) {
                            const double p = std::exp(si[j] - mx);  // exp(-inf) = 0 for masked keys
                            if (p == 0.0) continue;
                            sum += p;
                            const auto* vj = detail::kv_row<false>(kv, b, kvh, j);
                            for (index_t c = 0; c < d; ++c) acc[c] += p * to_float(vj[c]);
                        }
                    }
                    float* oi = o.ptr(b, i, h);
                    for (index_t c = 0; c < d; ++c) oi[c] = sum > 0 ? static_cast<float>(acc[c] / sum) : 0.0f;
                }
                for (index_t i = ql; i < q_seq; ++i) std::fill_n(o.ptr(b, i, h), d, 0.0f);
            },
            opt.threads);
    }
};

static_assert(attention_kernel<reference>);

}  // namespace kite::attn
