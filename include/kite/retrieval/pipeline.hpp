#pragma once
/// @file kite/retrieval/pipeline.hpp
/// A retrieval pipeline composed at compile time:
///
///   using hybrid = kite::retrieval::pipeline<const bm25_type&, const dense_type&,
///                                            kite::fusion::rrf<60>>;            // no rerank
///   using reranked = kite::retrieval::pipeline<bm25_ref, dense_ref, kite::fusion::rrf<60>,
///                                              my_cross_encoder>;                  // + rerank
///   hybrid p(bm25, dense);                 // retrievers held by reference (or by value)
///   auto top = p.search("query text", 10);
///
/// Stages (depths from `stage_depths`, defaults as in the seed): every retriever returns its top
/// `retrieve` (100); the fusion policy combines them and keeps `fuse` (20) — or `rerank` (30)
/// when there is a reranker, which rescores those candidates and returns the top k (10).
/// Retrievers of one query run concurrently when threads are available; search_batch runs
/// queries concurrently instead. Every stage is const: one pipeline may serve many threads.
///
/// dynamic_pipeline is the runtime-configured twin for tools that choose retrievers and fusion
/// from flags: types are erased there (retriever_ref, a function pointer) and nowhere else.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/parallel.hpp"
#include "kite/retrieval/fusion.hpp"
#include "kite/retrieval/ranking.hpp"

namespace kite::retrieval {

/// Candidate depth of each stage.
struct stage_depths {
    std::size_t retrieve = 100;  ///< results asked of each retriever
    std::size_t fuse = 20;       ///< fused results kept when there is no reranker
    std::size_t rerank = 30;     ///< fused candidates handed to the reranker
};

/// Everything a pipeline computed for one query (for display and debugging).
struct pipeline_trace {
    std::vector<ranking> retrieved;  ///< retrieved[i]: retriever i's ranking
    ranking fused;                   ///< after fusion
    ranking final;                   ///< after reranking (== fused prefix without a reranker)
    std::vector<double> retriever_ms;  ///< wall time of each retriever
    double fusion_ms = 0, rerank_ms = 0;
};

namespace detail {

template <class T>
inline constexpr bool is_reranker_v =
    std::is_same_v<std::remove_cvref_t<T>, no_rerank> || reranker<std::remove_cvref_t<T>>;

template <class... T>
struct type_list {};

/// Splits <R..., Fusion[, Reranker]> into retrievers, fusion and reranker.
template <class List, class... Rest>
struct split_parts;
template <class... R, class F>
struct split_parts<type_list<R...>, F> {
    using retrievers = type_list<R...>;
    using fusion = F;
    using reranker_type = no_rerank;
};
template <class... R, class F, class X>
struct split_parts<type_list<R...>, F, X> {
    using retrievers = std::conditional_t<is_reranker_v<X>, type_list<R...>, type_list<R..., F>>;
    using fusion = std::conditional_t<is_reranker_v<X>, F, X>;
    using reranker_type = std::conditional_t<is_reranker_v<X>, X, no_rerank>;
};
template <class... R, class A, class B, class C, class... Rest>
struct split_parts<type_list<R...>, A, B, C, Rest...> : split_parts<type_list<R..., A>, B, C, Rest...> {};

inline double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

inline ranking rerank_candidates(const ranking& fused, std::span<const float> scores, std::size_t k) {
    KITE_REQUIRE(scores.size() == fused.size(), shape_error, "pipeline: reranker returned ",
                 scores.size(), " scores for ", fused.size(), " candidates; expected one per candidate");
    // Rerank by the new score; equal scores keep the fused order.
    std::vector<std::size_t> order(fused.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
    ranking out;
    for (std::size_t i = 0; i < std::min(k, order.size()); ++i)
        out.push_back({scores[order[i]], fused[order[i]].id});
    return out;
}

}  // namespace detail

template <class Retrievers, class Fusion, class Reranker>
class basic_pipeline;

/// The pipeline over retrievers R..., a fusion policy and an optional reranker (see the file
/// comment). Retriever types may be references (`const bm25&`) to share existing indexes.
template <class... R, class Fusion, class Reranker>
class basic_pipeline<detail::type_list<R...>, Fusion, Reranker> {
    static_assert(sizeof...(R) >= 1, "pipeline: needs at least one retriever before the fusion policy");
    static_assert((retriever<std::remove_cvref_t<R>> && ...),
                  "pipeline: every part before the fusion policy must satisfy kite::retrieval::retriever "
                  "(a const search(std::string_view, k) returning a ranking)");
    static_assert(fusion_policy<Fusion>,
                  "pipeline: the part after the retrievers must satisfy kite::retrieval::fusion_policy "
                  "(a const fuse(std::span<const ranking>, k) returning a ranking)");
    static constexpr bool has_reranker = !std::is_same_v<std::remove_cvref_t<Reranker>, no_rerank>;

public:
    static constexpr std::size_t num_retrievers = sizeof...(R);

    template <class... Args>
        requires(sizeof...(Args) == sizeof...(R))
    explicit basic_pipeline(Args&&... retrievers) : retrievers_(std::forward<Args>(retrievers)...) {}
    template <class... Args>
        requires(sizeof...(Args) == sizeof...(R))
    basic_pipeline(Fusion fusion, Args&&... retrievers)
        : retrievers_(std::forward<Args>(retrievers)...), fusion_(std::move(fusion)) {}
    template <class... Args>
        requires(sizeof...(Args) == sizeof...(R) && has_reranker)
    basic_pipeline(Fusion fusion, Reranker reranker, Args&&... retrievers)
        : retrievers_(std::forward<Args>(retrievers)...), fusion_(std::move(fusion)),
          reranker_(std::move(reranker)) {}

    stage_depths& depths() noexcept { return depths_; }
    const stage_depths& depths() const noexcept { return depths_; }
    Fusion& fusion() noexcept { return fusion_; }
    const Fusion& fusion() const noexcept { return fusion_; }
    template <std::size_t I>
    const auto& retriever_at() const noexcept { return std::get<I>(retrievers_); }

    /// The top k for `query`; `threads` = 0 uses kite's default for the retriever fan-out.
    ranking search(std::string_view query, std::size_t k, int threads = 0) const {
        return trace(query, k, threads).final;
    }

    /// Like search, keeping every stage's output and timing.
    pipeline_trace trace(std::string_view query, std::size_t k, int threads = 0) const {
        KITE_REQUIRE(k >= 1, invalid_argument, "pipeline::search: k = 0; expected k >= 1");
        KITE_REQUIRE(depths_.retrieve >= 1, invalid_argument,
                     "pipeline: retrieve depth 0; expected at least 1 result per retriever");
        pipeline_trace t;
        t.retrieved.resize(num_retrievers);
        t.retriever_ms.resize(num_retrievers);
        parallel_for(
            0, num_retrievers,
            [&](std::size_t i) {
                const auto t0 = std::chrono::steady_clock::now();
                t.retrieved[i] = run_retriever(i, query);
                t.retriever_ms[i] = detail::ms_since(t0);
            },
            threads);
        const auto t0 = std::chrono::steady_clock::now();
        const std::size_t keep = has_reranker ? std::max(depths_.rerank, k) : std::max(depths_.fuse, k);
        t.fused = fusion_.fuse(t.retrieved, keep);
        t.fusion_ms = detail::ms_since(t0);
        if constexpr (has_reranker) {
            const auto t1 = std::chrono::steady_clock::now();
            std::vector<id_t> ids(t.fused.size());
            for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = t.fused[i].id;
            const std::vector<float> scores = reranker_.score(query, std::span<const id_t>(ids));
            t.final = detail::rerank_candidates(t.fused, scores, k);
            t.rerank_ms = detail::ms_since(t1);
        } else {
            t.final.assign(t.fused.begin(), t.fused.begin() + static_cast<std::ptrdiff_t>(std::min(k, t.fused.size())));
        }
        return t;
    }

    /// Top k for each query; queries run concurrently, each query's retrievers serially.
    std::vector<ranking> search_batch(std::span<const std::string> queries, std::size_t k, int threads = 0) const {
        std::vector<ranking> out(queries.size());
        parallel_for_dynamic(queries.size(), 1, [&](std::size_t q) { out[q] = search(queries[q], k, 1); }, threads);
        return out;
    }

private:
    template <std::size_t... I>
    ranking run_retriever_impl(std::size_t i, std::string_view query, std::index_sequence<I...>) const {
        ranking r;
        ((i == I ? (r = ranking(std::get<I>(retrievers_).search(query, depths_.retrieve)), 0) : 0), ...);
        return r;
    }
    ranking run_retriever(std::size_t i, std::string_view query) const {
        return run_retriever_impl(i, query, std::index_sequence_for<R...>{});
    }

    std::tuple<R...> retrievers_;
    Fusion fusion_{};
    [[no_unique_address]] Reranker reranker_{};
    stage_depths depths_{};
};

/// pipeline<Retrievers..., Fusion[, Reranker]>: see basic_pipeline.
template <class... Parts>
using pipeline = basic_pipeline<typename detail::split_parts<detail::type_list<>, Parts...>::retrievers,
                                typename detail::split_parts<detail::type_list<>, Parts...>::fusion,
                                typename detail::split_parts<detail::type_list<>, Parts...>::reranker_type>;

// ---------------------------------------------------------------------------------------------
// Runtime configuration

/// A non-owning (or shared-owning) type-erased reference to any retriever: a pointer and a
/// function pointer, no virtual call and no allocation per search.
class retriever_ref {
public:
    template <class R>
        requires retriever<R>
    retriever_ref(const R& r) noexcept  // NOLINT: implicit by design
        : obj_(&r), fn_([](const void* o, std::string_view q, std::size_t k) {
              return ranking(static_cast<const R*>(o)->search(q, k));
          }) {}
    template <class R>
        requires retriever<R>
    explicit retriever_ref(std::shared_ptr<const R> r) noexcept
        : retriever_ref(*r) {
        owner_ = std::move(r);
    }
    ranking search(std::string_view q, std::size_t k) const { return fn_(obj_, q, k); }

private:
    const void* obj_;
    ranking (*fn_)(const void*, std::string_view, std::size_t);
    std::shared_ptr<const void> owner_;
};

/// A reranker chosen at run time: "score (query, doc ids) -> scores".
using reranker_fn = std::function<std::vector<float>(std::string_view, std::span<const id_t>)>;

/// The fusion policies a runtime pipeline can choose from.
using any_fusion = std::variant<fusion::rrf<60>, fusion::weighted_rrf,
                                fusion::convex<fusion::normalization::minmax>,
                                fusion::convex<fusion::normalization::zscore>,
                                fusion::comb_sum<fusion::normalization::minmax>,
                                fusion::comb_mnz<fusion::normalization::minmax>>;

/// The runtime-configured pipeline (retrievers, fusion and reranker chosen at run time).
/// With one retriever, fusion is skipped and its ranking is used as is.
class dynamic_pipeline {
public:
    dynamic_pipeline() = default;
    dynamic_pipeline(std::vector<retriever_ref> retrievers, any_fusion fusion, reranker_fn reranker = {})
        : retrievers_(std::move(retrievers)), fusion_(std::move(fusion)), reranker_(std::move(reranker)) {}

    void add(retriever_ref r) { retrievers_.push_back(std::move(r)); }
    std::size_t num_retrievers() const noexcept { return retrievers_.size(); }
    stage_depths& depths() noexcept { return depths_; }
    const stage_depths& depths() const noexcept { return depths_; }
    any_fusion& fusion() noexcept { return fusion_; }

    pipeline_trace trace(std::string_view query, std::size_t k, int threads = 0) const {
        KITE_REQUIRE(!retrievers_.empty(), invalid_argument, "dynamic_pipeline: no retrievers; expected at least one");
        KITE_REQUIRE(k >= 1, invalid_argument, "dynamic_pipeline::search: k = 0; expected k >= 1");
        pipeline_trace t;
        const std::size_t n = retrievers_.size();
        t.retrieved.resize(n);
        t.retriever_ms.resize(n);
        parallel_for(
            0, n,
            [&](std::size_t i) {
                const auto t0 = std::chrono::steady_clock::now();
                t.retrieved[i] = retrievers_[i].search(query, depths_.retrieve);
                t.retriever_ms[i] = detail::ms_since(t0);
            },
            threads);
        const bool rerank = static_cast<bool>(reranker_);
        const std::size_t keep = rerank ? std::max(depths_.rerank, k) : std::max(depths_.fuse, k);
        const auto t0 = std::chrono::steady_clock::now();
        if (n == 1) {
            t.fused.assign(t.retrieved[0].begin(),
                           t.retrieved[0].begin() + static_cast<std::ptrdiff_t>(std::min(keep, t.retrieved[0].size())));
        } else {
            t.fused = std::visit([&](const auto& f) { return f.fuse(t.retrieved, keep); }, fusion_);
        }
        t.fusion_ms = detail::ms_since(t0);
        if (rerank) {
            const auto t1 = std::chrono::steady_clock::now();
            std::vector<id_t> ids(t.fused.size());
            for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = t.fused[i].id;
            const auto scores = reranker_(query, ids);
            t.final = detail::rerank_candidates(t.fused, scores, k);
            t.rerank_ms = detail::ms_since(t1);
        } else {
            t.final.assign(t.fused.begin(), t.fused.begin() + static_cast<std::ptrdiff_t>(std::min(k, t.fused.size())));
        }
        return t;
    }
    ranking search(std::string_view query, std::size_t k, int threads = 0) const {
        return trace(query, k, threads).final;
    }
    std::vector<ranking> search_batch(std::span<const std::string> queries, std::size_t k, int threads = 0) const {
        std::vector<ranking> out(queries.size());
        parallel_for_dynamic(queries.size(), 1, [&](std::size_t q) { out[q] = search(queries[q], k, 1); }, threads);
        return out;
    }

private:
    std::vector<retriever_ref> retrievers_;
    any_fusion fusion_{};
    reranker_fn reranker_;
    stage_depths depths_{};
};

}  // namespace kite::retrieval
