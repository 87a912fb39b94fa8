#pragma once
// Helpers of the attention tests: random problems in kite's [b][s][h][d] layout and the
// comparison of two outputs.

#include <cmath>
#include <random>
#include <vector>

#include "kite/attn.hpp"
#include "kite/core/half.hpp"
#include "kite_test.hpp"

namespace kite::test {

/// A prefill problem: q [batch][q_seq][n_q][d], k/v [batch][kv_seq][n_kv][d] (stored as T),
/// per-sequence lengths.
template <class T = float>
struct attn_problem {
    index_t batch = 1, q_seq = 1, kv_seq = 1, n_q = 1, n_kv = 1, d = 16;
    std::vector<index_t> q_lens, kv_lens;
    std::vector<float> q;
    std::vector<T> k, v;

    attn_problem(index_t batch_, std::vector<index_t> q_lens_, std::vector<index_t> kv_lens_, index_t n_q_,
                 index_t n_kv_, index_t d_, std::uint64_t seed, float q_scale = 1.0f)
        : batch(batch_), n_q(n_q_), n_kv(n_kv_), d(d_), q_lens(std::move(q_lens_)), kv_lens(std::move(kv_lens_)) {
        for (auto x : q_lens) q_seq = std::max(q_seq, x);
        for (auto x : kv_lens) kv_seq = std::max(kv_seq, x);
        q = randn(batch * q_seq * n_q * d, seed, q_scale);
        const auto kf = randn(batch * kv_seq * n_kv * d, seed + 1), vf = randn(batch * kv_seq * n_kv * d, seed + 2);
        for (float x : kf) k.push_back(from_float<T>(x));
        for (float x : vf) v.push_back(from_float<T>(x));
    }
    tensor_view<const float, 4> qv() const { return {q.data(), {batch, q_seq, n_q, d}}; }
    tensor_view<const T, 4> kv4() const { return {k.data(), {batch, kv_seq, n_kv, d}}; }
    tensor_view<const T, 4> vv4() const { return {v.data(), {batch, kv_seq, n_kv, d}}; }
    attn::tensor_kv<T> kv() const { return attn::tensor_kv<T>(kv4(), vv4(), kv_lens); }
    std::vector<float> out() const { return std::vector<float>(batch * q_seq * n_q * d, 12345.0f); }
    tensor_view<float, 4> ov(std::vector<float>& o) const { return {o.data(), {batch, q_seq, n_q, d}}; }
};

/// Largest absolute difference of two equally long vectors.
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(double(a[i]) - double(b[i]));
        if (!(d <= m)) m = d;  // NaN propagates as a failure
    }
    return m;
}

}  // namespace kite::test
