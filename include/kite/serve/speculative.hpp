#pragma once
/// @file kite/serve/speculative.hpp
/// Speculative decoding for kite::serve::engine: a drafter proposes k tokens, the target model
/// checks all of them in one batched forward pass (k + 1 logit rows), and verify() keeps the
/// longest accepted run plus one token of the target's own, so every step yields 1 .. k + 1
/// tokens. Drafters, chosen at compile time:
///
///   no_speculation          the default
///   prompt_lookup           n-gram drafting: the longest suffix of the text so far (max_ngram
///                           down to min_ngram tokens) that occurred earlier in the prompt or the
///                           output proposes the tokens that followed it; no draft model. The fit
///                           for retrieval-augmented prompts, where answers copy the context.
///   draft_model<Decoder>    a small kite decoder with the target's vocabulary samples k tokens
///                           from its own distribution q (kept for the acceptance rule).
///
/// The acceptance rule is exact (Leviathan et al. 2023, Chen et al. 2023): a drafted token x is
/// accepted with probability min(1, p(x) / q(x)), p the target's distribution after the
/// request's temperature / top-k / top-p; on rejection the token is drawn from
/// norm(max(0, p - q)); when all k are accepted a bonus token is drawn from the last row. An
/// n-gram draft is a point mass (q(x) = 1). Greedy requests accept while the draft equals the
/// target's argmax, so their output equals plain greedy decoding token for token; sampled
/// requests keep the target's output distribution (tests check both).

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/kv/concepts.hpp"
#include "kite/model/sampling.hpp"

namespace kite::serve {

namespace detail {
/// A token drawn from unnormalised weights w (total their sum) with the sampler's generator:
/// the first index whose running sum passes the coin (zero weights never chosen).
inline std::int32_t draw(std::span<const float> w, double total, model::sampler& smp) {
    const double coin = smp.rng().next_float() * total;
    double cdf = 0;
    index_t last = 0;
    for (index_t j = 0; j < w.size(); ++j) {
        if (w[j] <= 0) continue;
        last = j;
        cdf += w[j];
        if (coin < cdf) return static_cast<std::int32_t>(j);
    }
    return static_cast<std::int32_t>(last);
}
}  // namespace detail

/// Tokens proposed for one sequence; q[i] is the distribution token i was drawn from (empty for
/// a point-mass draft such as prompt lookup).
struct draft {
    std::vector<std::int32_t> tokens;
    std::vector<std::vector<float>> q;
    void clear() {
        tokens.clear();
        q.clear();
    }
};

/// No drafting (the engine's default).
struct no_speculation {
    static constexpr bool enabled = false;
    static constexpr const char* name = "off";
};

/// Prompt-lookup (n-gram) drafting; see the file comment.
struct prompt_lookup {
    static constexpr bool enabled = true;
    static constexpr const char* name = "ngram";
    index_t max_draft = 4;   ///< k, tokens proposed per step at most
    index_t min_ngram = 3;   ///< shortest suffix matched (shorter matches mostly propose wrong tokens)
    index_t max_ngram = 3;   ///< longest suffix matched

    index_t max_draft_tokens() const noexcept { return max_draft; }

    void validate() const {
        KITE_REQUIRE(max_draft >= 1 && min_ngram >= 1 && max_ngram >= min_ngram, invalid_argument,
                     "prompt_lookup: max_draft = ", max_draft, ", min_ngram = ", min_ngram, ", max_ngram = ", max_ngram,
                     "; expected max_draft >= 1 and 1 <= min_ngram <= max_ngram");
    }

    /// Up to k tokens following the most recent earlier occurrence of the longest matching
    /// suffix of `context` (none when no suffix of min_ngram tokens recurs).
    void propose(std::uint64_t, std::span<const std::int32_t> context, index_t k, model::sampler&, draft& out) {
        out.clear();
        const index_t L = context.size();
        for (index_t n = std::min(max_ngram, L > 0 ? L - 1 : 0); n >= min_ngram && n >= 1; --n) {
            const auto suffix = context.subspan(L - n, n);
            for (index_t j = L - n; j-- > 0;) {  // most recent occurrence first
                if (!std::equal(suffix.begin(), suffix.end(), context.begin() + static_cast<std::ptrdiff_t>(j))) continue;
                const index_t from = j + n, to = std::min(L, from + k);
                out.tokens.assign(context.begin() + static_cast<std::ptrdiff_t>(from),
                                  context.begin() + static_cast<std::ptrdiff_t>(to));
                return;
            }
        }
    }
    void release(std::uint64_t) noexcept {}
};

/// A draft model: any kite decoder with the target's vocabulary (see the file comment). It
/// keeps its own KV cache and, per engine sequence, the tokens it holds; each proposal
/// recomputes only what changed since the last one (the accepted tokens).
template <class Decoder>
class draft_model {
public:
    static constexpr bool enabled = true;
    static constexpr const char* name = "draft-model";

    /// `model` must outlive the drafter; its cache holds `max_tokens` tokens for each of up to
    /// `max_sequences` sequences.
    draft_model(const Decoder& model, index_t max_draft, index_t max_tokens, index_t max_sequences)
        : m_(&model), k_(max_draft), cache_(model.make_cache(max_tokens, max_sequences)) {
        KITE_REQUIRE(max_draft >= 1, invalid_argument, "draft_model: max_draft = ", max_draft, "; expected >= 1");
    }
    draft_model(draft_model&&) = default;

    index_t max_draft_tokens() const noexcept { return k_; }
    index_t vocab_size() const noexcept { return m_->vocab_size(); }

    /// k tokens drawn from the draft model after `context`, with the sampler's parameters and
    /// generator (greedy: its argmax), and the distribution of each.
    void propose(std::uint64_t key, std::span<const std::int32_t> context, index_t k, model::sampler& smp, draft& out) {
        out.clear();
        if (context.empty() || k == 0) return;
        auto it = seqs_.find(key);
        if (it == seqs_.end()) it = seqs_.emplace(key, state{*cache_.add_sequence(), {}}).first;
        state& st = it->second;
        // Keep the longest common prefix (at least one token is fed again to get logits).
        index_t keep = 0;
        const index_t held = st.tokens.size();
        while (keep < held && keep < context.size() && st.tokens[keep] == context[keep]) ++keep;
        keep = std::min(keep, static_cast<index_t>(context.size()) - 1);
        cache_.truncate(st.seq, keep);
        st.tokens.assign(context.begin(), context.begin() + static_cast<std::ptrdiff_t>(keep));
        logits_.resize(1, m_->vocab_size());
        const auto feed = context.subspan(keep);
        if (!run(st, feed)) return;
        for (index_t i = 0; i < k; ++i) {
            std::vector<float> q(m_->vocab_size());
            smp.distribution(logits_.row(0), q);
            const std::int32_t x = draw(q, smp);
            out.tokens.push_back(x);
            out.q.push_back(std::move(q));
            if (i + 1 < k && !run(st, std::span<const std::int32_t>(&out.tokens.back(), 1))) return;
        }
    }

    /// Forgets a finished sequence.
    void release(std::uint64_t key) {
        if (const auto it = seqs_.find(key); it != seqs_.end()) {
            cache_.free(it->second.seq);
            seqs_.erase(it);
        }
    }

private:
    struct state {
        kv::seq_id seq;
        std::vector<std::int32_t> tokens;
    };
    bool run(state& st, std::span<const std::int32_t> tokens) {
        if (m_->max_positions() != 0 && st.tokens.size() + tokens.size() > m_->max_positions()) return false;
        if (m_->prefill(ws_, cache_, st.seq, tokens, logits_.view()) != kv::status::ok) return false;
        st.tokens.insert(st.tokens.end(), tokens.begin(), tokens.end());
        return true;
    }
    static std::int32_t draw(std::span<const float> q, model::sampler& smp) {
        if (smp.greedy()) return static_cast<std::int32_t>(std::max_element(q.begin(), q.end()) - q.begin());
        return detail::draw(q, 1.0, smp);
    }

    const Decoder* m_;
    index_t k_;
    typename Decoder::cache_type cache_;
    typename Decoder::workspace ws_;
    matrix<float> logits_;
    std::unordered_map<std::uint64_t, state> seqs_;
};

/// The outcome of verifying one draft: how many drafted tokens were accepted and the token the
/// target adds after them (the correction on a rejection, else the bonus token).
struct verdict {
    index_t accepted = 0;
    std::int32_t next = 0;
};

/// Applies the acceptance rule to target logits rows [k + 1][vocab] (row i: after the context
/// and drafts 0..i-1) for drafts d (q: their distributions, or empty for a point mass).
/// `p` is scratch of vocab floats.
inline verdict verify(model::sampler& smp, matrix_view<const float> rows, std::span<const std::int32_t> d,
                      std::span<const std::vector<float>> q, std::vector<float>& p) {
    const index_t k = d.size(), vocab = rows.cols();
    KITE_REQUIRE(rows.rows() == k + 1, shape_error, "serve::verify: ", rows.rows(), " logit rows for ", k,
                 " drafted tokens; expected ", k + 1);
    KITE_REQUIRE(q.empty() || q.size() == k, shape_error, "serve::verify: ", q.size(), " draft distributions for ", k,
                 " drafted tokens; expected ", k, " or none");
    if (smp.greedy()) {
        for (index_t i = 0; i < k; ++i) {
            const auto a = static_cast<std::int32_t>(model::argmax(rows.row(i)));
            if (a != d[i]) return {i, a};
        }
        return {k, static_cast<std::int32_t>(model::argmax(rows.row(k)))};
    }
    p.resize(vocab);
    for (index_t i = 0; i < k; ++i) {
        smp.distribution(rows.row(i), p);
        const std::int32_t x = d[i];
        KITE_REQUIRE(x >= 0 && static_cast<index_t>(x) < vocab, invalid_argument, "serve::verify: drafted token ", x, " outside the vocabulary of ",
                     vocab);
        const double qx = q.empty() ? 1.0 : q[i][x];
        const double u = smp.rng().next_float();
        if (u * qx < p[x]) continue;  // accepted with probability min(1, p(x) / q(x))
        // Rejected: draw from norm(max(0, p - q)).
        double total = 0;
        for (index_t j = 0; j < vocab; ++j) {
            const double qj = q.empty() ? (j == static_cast<index_t>(x) ? 1.0 : 0.0) : q[i][j];
            p[j] = static_cast<float>(std::max(0.0, p[j] - qj));
            total += p[j];
        }
        if (total <= 0) {  // p == q up to rounding: any draw from p is right
            smp.distribution(rows.row(i), p);
            total = 1;
        }
        return {i, detail::draw(p, total, smp)};
    }
    smp.distribution(rows.row(k), p);
    return {k, detail::draw(p, 1.0, smp)};
}

}  // namespace kite::serve
