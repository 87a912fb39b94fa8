#pragma once
/// @file kite/app/llm_cache.hpp
/// LLM caches that answer repeated (exact) or paraphrased (semantic) questions without calling
/// the model, persisted in SQLite (kite/app/sqlite.hpp) so they survive restarts.
///
///   kite::app::exact_cache exact("app.sqlite", {.ttl_seconds = 86400, .max_entries = 100000});
///   const std::string scope = kite::app::cache_scope("SmolLM2-135M-Instruct.Q4_1", params);
///   if (auto hit = exact.lookup(question, scope)) return hit->response;      // byte-identical
///   exact.store(question, scope, answer, {{"citations", ids}});
///
///   auto st = kite::model::sentence_encoder<>::load("models/all-MiniLM-L6-v2");
///   kite::app::semantic_cache<const decltype(st)&> semantic("app.sqlite", st);  // cosine >= 0.95
///   if (auto hit = semantic.lookup("What makes the seasons change?", scope))
///       use(hit->response, hit->similarity, hit->matched_prompt);
///
///   kite::app::tiered_cache both(exact, semantic);   // exact first, then semantic; stores in both
///
/// Keys. The exact cache keys on normalize_prompt(prompt) (Unicode NFC, whitespace runs folded
/// to one space, trimmed; case kept unless cache_options::casefold) and a scope string naming
/// the model and every parameter that changes the answer (cache_scope(model, params): the
/// params JSON with sorted keys). A different model, temperature, max_tokens or corpus is a
/// different scope, hence a miss. The semantic cache embeds the prompt with its Embedder
/// (unit-length vectors, e.g. kite::model::sentence_encoder) and searches the cached prompts
/// of the same scope in a flat inner-product index; a hit is the nearest cached prompt when its
/// cosine similarity is >= threshold (the default is calibrated on KLUE STS and SciFact; see
/// bench/README.md "Semantic cache threshold") and, by default, the two prompts do not differ in
/// a number, a negation or a word of direction (same_polarity).
///
/// Storage. Each cache owns one SQLite connection (WAL, one transaction per write; see
/// kite/app/sqlite.hpp for what survives a killed process) and its own table in a schema
/// versioned with sql::database::migrate, so the caches and the exchange log can share one
/// file. Entries expire ttl_seconds after they were stored (0: never); beyond max_entries the
/// least recently used are evicted in the same transaction as the insert. The semantic cache
/// keeps the vectors in memory as well and rebuilds that index from its table when it opens.
///
/// Thread safety: every member takes the cache's mutex; one cache may serve many threads.
/// Needs SQLite 3 and utf8proc (link kite::app).

#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <iterator>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/app/sqlite.hpp"
#include "kite/core/error.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite/text/utf8.hpp"

namespace kite::app {

/// Where an answer came from.
enum class cache_outcome { miss, exact, semantic };

inline const char* to_string(cache_outcome o) noexcept {
    switch (o) {
        case cache_outcome::miss: return "miss";
        case cache_outcome::exact: return "exact";
        case cache_outcome::semantic: return "semantic";
    }
    return "?";
}

/// A cached answer.
struct cache_hit {
    cache_outcome outcome = cache_outcome::exact;
    std::string response;            ///< byte for byte what was stored
    nlohmann::json metadata;         ///< what was stored beside it (citations, token counts, ...)
    std::string matched_prompt;      ///< the cached prompt that matched (normalised)
    double similarity = 1.0;         ///< cosine to the matched prompt (1 for exact hits)
    double created = 0;              ///< Unix seconds when stored
    std::uint64_t hits = 0;          ///< times served, this one included
};

/// Counters since the cache was opened.
struct cache_stats {
    std::uint64_t lookups = 0, hits = 0, misses = 0, expired = 0, stores = 0, evictions = 0;
    std::uint64_t guarded = 0;  ///< semantic near-misses refused by the guard (same_polarity)
    double hit_rate() const noexcept { return lookups ? static_cast<double>(hits) / static_cast<double>(lookups) : 0.0; }
};

/// Options shared by both caches.
struct cache_options {
    double ttl_seconds = 0;                  ///< entries expire this long after store(); 0: never
    std::size_t max_entries = 100000;        ///< least recently used evicted beyond this, >= 1
    bool casefold = false;                   ///< fold case in normalize_prompt
    sql::durability sync = sql::durability::normal;
    std::function<double()> clock{};         ///< Unix seconds; empty: the system clock (tests inject one)
};

/// The semantic cache's options.
struct semantic_cache_options : cache_options {
    /// A hit needs cosine >= threshold. 0.95, chosen on KLUE STS and SciFact with
    /// all-MiniLM-L6-v2 (bench/README.md "Semantic cache threshold"): the lowest cosine where
    /// "same meaning" precision stays near 0.9 on KLUE STS; there, with the guard, 2.2% of
    /// SciFact's other claims hit a cached one. With this encoder it catches close rewordings,
    /// not free paraphrases.
    double threshold = 0.95;
    /// Refuse a hit when the two prompts differ in a number, a negation or a word of direction
    /// (same_polarity): embeddings place "X increases Y" next to "X decreases Y".
    bool guard = true;
};

/// The prompt as the exact cache keys it: Unicode NFC (optionally case-folded), every run of
/// white space (Unicode Zs, tab, newlines) replaced by one space, leading and trailing space
/// removed. Invalid UTF-8 is a kite::unicode_error.
inline std::string normalize_prompt(std::string_view text, bool casefold = false) {
    text::utf8::require_valid(text, 0, "normalize_prompt");
    if (text.empty()) return {};
    utf8proc_uint8_t* mapped = nullptr;
    int opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    if (casefold) opts |= UTF8PROC_CASEFOLD;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                                            static_cast<utf8proc_option_t>(opts));
    KITE_REQUIRE(n >= 0, invalid_argument, "normalize_prompt: ", utf8proc_errmsg(n));
    std::string out;
    out.reserve(static_cast<std::size_t>(n));
    bool pending_space = false;
    for (utf8proc_ssize_t i = 0; i < n;) {
        utf8proc_int32_t cp = 0;
        const utf8proc_ssize_t len = utf8proc_iterate(mapped + i, n - i, &cp);
        const bool space = cp == '\t' || cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || cp == 0x85 ||
                           cp == 0x2028 || cp == 0x2029 || utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
        if (space) {
            pending_space = !out.empty();
        } else {
            if (pending_space) out.push_back(' ');
            pending_space = false;
            out.append(reinterpret_cast<const char*>(mapped + i), static_cast<std::size_t>(len));
        }
        i += len;
    }
    std::free(mapped);
    return out;
}

/// A scope string: the model and the parameters that change an answer (any JSON; its object
/// keys are sorted, so equal parameters give equal scopes).
inline std::string cache_scope(std::string_view model, const nlohmann::json& params = nlohmann::json::object()) {
    return std::string(model) + '\x1f' + params.dump();
}

namespace detail {

/// Lower-cased ASCII words of `s` (letters, digits, apostrophes); other bytes split words.
inline std::vector<std::string> guard_words(std::string_view s) {
    std::vector<std::string> out;
    std::string w;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '\'') {
            w.push_back(static_cast<char>(std::tolower(u)));
        } else if (!w.empty()) {
            out.push_back(std::move(w));
            w.clear();
        }
    }
    if (!w.empty()) out.push_back(std::move(w));
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

/// A word that flips or scales a claim: a number, a negation, or a word of direction or degree.
inline bool polar_word(std::string_view w) {
    for (char c : w)
        if (c >= '0' && c <= '9') return true;
    if (w.size() >= 3 && w.substr(w.size() - 3) == "n't") return true;
    static constexpr std::string_view exact[] = {"no", "not", "nor", "never", "none", "nothing", "neither", "without",
                                                 "cannot", "unable", "absent", "absence", "fail", "fails", "failed",
                                                 "up", "down", "more", "most", "less", "least", "fewer", "only"};
    for (auto e : exact)
        if (w == e) return true;
    static constexpr std::string_view stems[] = {
        "increas", "decreas", "reduc", "rais", "lower", "higher", "high", "low", "great", "small", "larg", "promot",
        "inhibit", "prevent", "enhanc", "impair", "improv", "wors", "better", "positiv", "negativ", "counteract",
        "block", "activat", "suppress", "induc", "elevat", "diminish", "attenuat", "exacerbat", "accelerat", "slow",
        "fast", "lack", "harm", "benefi", "protect", "risk", "safe", "before", "after", "above", "below", "max", "min"};
    for (auto st : stems)
        if (w.substr(0, st.size()) == st) return true;
    return false;
}

}  // namespace detail

/// True when `a` and `b` do not differ in a number, a negation or a word of direction or
/// degree (English word lists: increase / decrease, higher / lower, promote / inhibit, not,
/// never, without, ...): the semantic cache's guard against answering "does X increase Y?"
/// with the cached answer to "does X decrease Y?". Words both texts contain are ignored.
inline bool same_polarity(std::string_view a, std::string_view b) {
    const auto wa = detail::guard_words(a), wb = detail::guard_words(b);
    std::vector<std::string> diff;
    std::set_symmetric_difference(wa.begin(), wa.end(), wb.begin(), wb.end(), std::back_inserter(diff));
    for (const auto& w : diff)
        if (detail::polar_word(w)) return false;
    return true;
}

namespace detail {

inline double clock_now(const cache_options& o) { return o.clock ? o.clock() : sql::unix_seconds(); }

inline void check_cache_options(const cache_options& o, const char* who) {
    KITE_REQUIRE(o.max_entries >= 1, invalid_argument, who, ": max_entries = 0; expected >= 1");
    KITE_REQUIRE(std::isfinite(o.ttl_seconds) && o.ttl_seconds >= 0, invalid_argument, who,
                 ": ttl_seconds = ", o.ttl_seconds, "; expected a finite number >= 0");
}

inline void check_text(std::string_view s, const char* who, const char* what) {
    text::utf8::require_valid(s, 0, std::string(who) + ": " + what);
}

/// A hit from a row (response, metadata, prompt, created, expires, hits) of either table.
inline cache_hit read_hit(const sql::statement& st, cache_outcome outcome) {
    cache_hit hit;
    hit.outcome = outcome;
    hit.response = std::string(st.text(0));
    hit.metadata = nlohmann::json::parse(st.text(1), nullptr, false);
    if (hit.metadata.is_discarded()) hit.metadata = nlohmann::json::object();
    hit.matched_prompt = std::string(st.text(2));
    hit.created = st.real(3);
    hit.hits = static_cast<std::uint64_t>(st.int64(5)) + 1;
    return hit;
}

}  // namespace detail

/// Exact-match cache: normalised prompt + scope -> response (see the file comment).
class exact_cache {
public:
    explicit exact_cache(const std::filesystem::path& db, cache_options opt = {})
        : opt_(std::move(opt)), db_(db, {.sync = opt_.sync}) {
        detail::check_cache_options(opt_, "exact_cache");
        db_.migrate("exact_cache",
                    {"CREATE TABLE exact_cache (key TEXT PRIMARY KEY, scope TEXT NOT NULL, prompt TEXT NOT NULL,"
                     " response TEXT NOT NULL, metadata TEXT NOT NULL, created REAL NOT NULL, last_used REAL NOT NULL,"
                     " expires REAL, hits INTEGER NOT NULL DEFAULT 0);"
                     "CREATE INDEX exact_cache_lru ON exact_cache (last_used);"});
        count_ = count_rows();
    }

    /// The cached response for `prompt` in `scope`, or nullopt (an expired entry is removed).
    std::optional<cache_hit> lookup(std::string_view prompt, std::string_view scope) {
        detail::check_text(prompt, "exact_cache::lookup", "prompt");
        const std::string key = make_key(prompt, scope);
        std::lock_guard lock(mu_);
        ++stats_.lookups;
        const double now = detail::clock_now(opt_);
        auto st = db_.prepare("SELECT response, metadata, prompt, created, expires, hits FROM exact_cache WHERE key = ?1");
        st.bind(1, key);
        if (!st.step()) {
            ++stats_.misses;
            return std::nullopt;
        }
        if (!st.is_null(4) && st.real(4) <= now) {
            st.reset();
            auto del = db_.prepare("DELETE FROM exact_cache WHERE key = ?1");
            del.bind(1, key).run();
            if (db_.changes() > 0 && count_ > 0) --count_;
            ++stats_.expired;
            ++stats_.misses;
            return std::nullopt;
        }
        cache_hit hit = detail::read_hit(st, cache_outcome::exact);
        st.reset();
        auto upd = db_.prepare("UPDATE exact_cache SET last_used = ?2, hits = hits + 1 WHERE key = ?1");
        upd.bind(1, key).bind(2, now).run();
        ++stats_.hits;
        return hit;
    }

    /// Stores (or replaces) the response for `prompt` in `scope`: one transaction, which also
    /// evicts the least recently used entries beyond max_entries.
    void store(std::string_view prompt, std::string_view scope, std::string_view response,
               const nlohmann::json& metadata = nlohmann::json::object()) {
        detail::check_text(prompt, "exact_cache::store", "prompt");
        detail::check_text(response, "exact_cache::store", "response");
        const std::string key = make_key(prompt, scope);
        const std::string norm = normalize_prompt(prompt, opt_.casefold);
        const std::string meta = metadata.dump();
        std::lock_guard lock(mu_);
        const double now = detail::clock_now(opt_);
        auto tx = db_.begin();
        bool existed = false;
        {
            auto q = db_.prepare("SELECT 1 FROM exact_cache WHERE key = ?1");
            q.bind(1, key);
            existed = q.step();
        }
        auto ins = db_.prepare(
            "INSERT INTO exact_cache (key, scope, prompt, response, metadata, created, last_used, expires, hits)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, 0) ON CONFLICT(key) DO UPDATE SET response = excluded.response,"
            " metadata = excluded.metadata, created = excluded.created, last_used = excluded.last_used,"
            " expires = excluded.expires, hits = 0");
        ins.bind(1, key).bind(2, scope).bind(3, norm).bind(4, response).bind(5, meta).bind(6, now);
        if (opt_.ttl_seconds > 0) ins.bind(7, now + opt_.ttl_seconds);
        else ins.bind(7, nullptr);
        ins.run();
        std::size_t count = count_ + (existed ? 0 : 1);
        std::uint64_t evicted = 0;
        if (count > opt_.max_entries) {
            auto ev = db_.prepare("DELETE FROM exact_cache WHERE key IN (SELECT key FROM exact_cache WHERE key != ?2"
                                  " ORDER BY last_used ASC LIMIT ?1)");
            ev.bind(1, static_cast<std::int64_t>(count - opt_.max_entries)).bind(2, key).run();
            evicted = static_cast<std::uint64_t>(db_.changes());
            count -= static_cast<std::size_t>(evicted);
        }
        tx.commit();
        count_ = count;
        ++stats_.stores;
        stats_.evictions += evicted;
    }

    /// Entries in the table (expired ones not yet removed included).
    std::size_t size() {
        std::lock_guard lock(mu_);
        return count_;
    }
    /// Removes expired entries; returns how many.
    std::size_t remove_expired() {
        std::lock_guard lock(mu_);
        auto st = db_.prepare("DELETE FROM exact_cache WHERE expires IS NOT NULL AND expires <= ?1");
        st.bind(1, detail::clock_now(opt_)).run();
        const auto n = static_cast<std::size_t>(db_.changes());
        count_ -= std::min(count_, n);
        stats_.expired += n;
        return n;
    }
    void clear() {
        std::lock_guard lock(mu_);
        db_.exec("DELETE FROM exact_cache");
        count_ = 0;
    }
    cache_stats stats() const {
        std::lock_guard lock(mu_);
        return stats_;
    }
    const cache_options& options() const noexcept { return opt_; }

private:
    std::string make_key(std::string_view prompt, std::string_view scope) const {
        std::string k(scope);
        k += '\x1e';
        k += normalize_prompt(prompt, opt_.casefold);
        return k;
    }
    std::size_t count_rows() {
        auto st = db_.prepare("SELECT count(*) FROM exact_cache");
        st.step();
        return static_cast<std::size_t>(st.int64(0));
    }

    cache_options opt_;
    sql::database db_;
    mutable std::mutex mu_;
    std::size_t count_ = 0;
    cache_stats stats_;
};

/// An embedder for the semantic cache: e(text) -> std::vector<float> (unit length is best;
/// vectors are normalised again here).
template <class E>
concept prompt_embedder = requires(const E& e, std::string_view s) {
    { e(s) } -> std::convertible_to<std::vector<float>>;
};

/// Semantic cache: the nearest cached prompt of the same scope by cosine (see the file
/// comment). Embedder may be a reference type (const sentence_encoder<>&) to share an encoder.
template <class Embedder>
    requires prompt_embedder<std::remove_cvref_t<Embedder>>
class semantic_cache {
public:
    semantic_cache(const std::filesystem::path& db, Embedder embedder, semantic_cache_options opt = {})
        : opt_(std::move(opt)), embed_(std::forward<Embedder>(embedder)), db_(db, {.sync = opt_.sync}) {
        detail::check_cache_options(opt_, "semantic_cache");
        KITE_REQUIRE(std::isfinite(opt_.threshold) && opt_.threshold >= -1.0 && opt_.threshold <= 1.0, invalid_argument,
                     "semantic_cache: threshold = ", opt_.threshold, "; expected a cosine in [-1, 1]");
        db_.migrate("semantic_cache",
                    {"CREATE TABLE semantic_cache (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, prompt TEXT NOT NULL,"
                     " embedding BLOB NOT NULL, response TEXT NOT NULL, metadata TEXT NOT NULL, created REAL NOT NULL,"
                     " last_used REAL NOT NULL, expires REAL, hits INTEGER NOT NULL DEFAULT 0);"
                     "CREATE INDEX semantic_cache_lru ON semantic_cache (last_used);"});
        rebuild();
    }

    /// The cached response of the nearest prompt in `scope` whose cosine is >= threshold (and,
    /// with options().guard, that passes same_polarity with `prompt`).
    std::optional<cache_hit> lookup(std::string_view prompt, std::string_view scope) {
        detail::check_text(prompt, "semantic_cache::lookup", "prompt");
        const std::vector<float> v = embed(prompt);
        return lookup_vector(v, scope, normalize_prompt(prompt, opt_.casefold));
    }

    /// The same with the prompt's embedding already computed; the guard needs `prompt` (an
    /// empty one skips it).
    std::optional<cache_hit> lookup_vector(std::span<const float> v, std::string_view scope, std::string_view prompt = {}) {
        std::lock_guard lock(mu_);
        check_dim(v.size(), "semantic_cache::lookup");
        ++stats_.lookups;
        const double now = detail::clock_now(opt_);
        auto it = scopes_.find(std::string(scope));
        constexpr index_t candidates = 8;
        while (it != scopes_.end() && !it->second.empty()) {
            const auto res = it->second.search(v, std::min<index_t>(candidates, it->second.size()));
            bool changed = false;
            for (index_t c = 0; c < res.labels.cols() && !changed; ++c) {
                const id_t id = res.labels(0, c);
                const double sim = res.distances(0, c);
                if (id < 0 || !(sim >= opt_.threshold)) break;
                auto st = db_.prepare(
                    "SELECT response, metadata, prompt, created, expires, hits FROM semantic_cache WHERE id = ?1");
                st.bind(1, static_cast<std::int64_t>(id));
                if (!st.step()) {  // removed by another connection: drop it here and search again
                    drop_from_index(id);
                    changed = true;
                    break;
                }
                if (!st.is_null(4) && st.real(4) <= now) {
                    st.reset();
                    erase_row(id);
                    ++stats_.expired;
                    changed = true;
                    break;
                }
                if (opt_.guard && !prompt.empty() && !same_polarity(prompt, st.text(2))) {
                    ++stats_.guarded;
                    continue;
                }
                cache_hit hit = detail::read_hit(st, cache_outcome::semantic);
                hit.similarity = sim;
                st.reset();
                auto upd = db_.prepare("UPDATE semantic_cache SET last_used = ?2, hits = hits + 1 WHERE id = ?1");
                upd.bind(1, static_cast<std::int64_t>(id)).bind(2, now).run();
                ++stats_.hits;
                return hit;
            }
            if (!changed) break;
        }
        ++stats_.misses;
        return std::nullopt;
    }

    /// The similarity of the nearest cached prompt in `scope` (-inf when there is none), hit or not.
    double nearest_similarity(std::span<const float> v, std::string_view scope) {
        std::lock_guard lock(mu_);
        check_dim(v.size(), "semantic_cache::nearest_similarity");
        auto it = scopes_.find(std::string(scope));
        if (it == scopes_.end() || it->second.empty()) return -std::numeric_limits<double>::infinity();
        return it->second.search(v, 1).distances(0, 0);
    }

    /// Caches `response` for `prompt` in `scope` (a new entry even when a near one exists).
    void store(std::string_view prompt, std::string_view scope, std::string_view response,
               const nlohmann::json& metadata = nlohmann::json::object()) {
        detail::check_text(prompt, "semantic_cache::store", "prompt");
        const std::vector<float> v = embed(prompt);
        store_vector(prompt, v, scope, response, metadata);
    }

    void store_vector(std::string_view prompt, std::span<const float> v, std::string_view scope,
                      std::string_view response, const nlohmann::json& metadata = nlohmann::json::object()) {
        detail::check_text(prompt, "semantic_cache::store", "prompt");
        detail::check_text(response, "semantic_cache::store", "response");
        for (float x : v)
            KITE_REQUIRE(std::isfinite(x), invalid_argument, "semantic_cache::store: the embedding has a non-finite value");
        const std::string norm = normalize_prompt(prompt, opt_.casefold);
        const std::string meta = metadata.dump();
        std::lock_guard lock(mu_);
        check_dim(v.size(), "semantic_cache::store");
        const double now = detail::clock_now(opt_);
        auto tx = db_.begin();
        auto ins = db_.prepare(
            "INSERT INTO semantic_cache (scope, prompt, embedding, response, metadata, created, last_used, expires)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)");
        ins.bind(1, scope).bind(2, norm).bind_blob(3, std::as_bytes(v)).bind(4, response).bind(5, meta).bind(6, now);
        if (opt_.ttl_seconds > 0) ins.bind(7, now + opt_.ttl_seconds);
        else ins.bind(7, nullptr);
        ins.run();
        const id_t id = static_cast<id_t>(db_.last_insert_id());
        std::vector<id_t> evicted;
        if (count_ + 1 > opt_.max_entries) {
            auto q = db_.prepare("SELECT id FROM semantic_cache WHERE id != ?2 ORDER BY last_used ASC LIMIT ?1");
            q.bind(1, static_cast<std::int64_t>(count_ + 1 - opt_.max_entries)).bind(2, static_cast<std::int64_t>(id));
            while (q.step()) evicted.push_back(static_cast<id_t>(q.int64(0)));
            q.reset();
            auto del = db_.prepare("DELETE FROM semantic_cache WHERE id = ?1");
            for (id_t e : evicted) del.bind(1, static_cast<std::int64_t>(e)).run();
        }
        tx.commit();
        // The index follows the committed table.
        for (id_t e : evicted) drop_from_index(e);
        add_to_index(std::string(scope), id, v);
        ++stats_.stores;
        stats_.evictions += evicted.size();
    }

    std::size_t size() {
        std::lock_guard lock(mu_);
        return count_;
    }
    cache_stats stats() const {
        std::lock_guard lock(mu_);
        return stats_;
    }
    const semantic_cache_options& options() const noexcept { return opt_; }
    /// Changes the hit threshold (a cosine in [-1, 1]).
    void set_threshold(double t) {
        KITE_REQUIRE(std::isfinite(t) && t >= -1.0 && t <= 1.0, invalid_argument, "semantic_cache: threshold = ", t,
                     "; expected a cosine in [-1, 1]");
        std::lock_guard lock(mu_);
        opt_.threshold = t;
    }
    /// The embedder's vector for `prompt` (normalised to unit length).
    std::vector<float> embed(std::string_view prompt) const {
        std::vector<float> v = embed_(prompt);
        KITE_REQUIRE(!v.empty(), invalid_argument, "semantic_cache: the embedder returned an empty vector");
        return v;
    }
    void clear() {
        std::lock_guard lock(mu_);
        db_.exec("DELETE FROM semantic_cache");
        scopes_.clear();
        where_.clear();
        count_ = 0;
    }

private:
    using index_type = retrieval::flat_index<metric::cosine>;

    void check_dim(std::size_t d, const char* who) {
        if (dim_ == 0) dim_ = d;
        KITE_REQUIRE(d == dim_, shape_error, who, ": embedding dimension ", d, "; the cache holds ", dim_,
                     "-d vectors (a different encoder?)");
    }
    void add_to_index(const std::string& scope, id_t id, std::span<const float> v) {
        auto [it, fresh] = scopes_.try_emplace(scope, static_cast<index_t>(v.size()));
        it->second.add_with_ids(kite::matrix_view<const float>(v.data(), 1, static_cast<index_t>(v.size())),
                                std::span<const id_t>(&id, 1));
        where_[id] = scope;
        ++count_;
    }
    void drop_from_index(id_t id) {
        auto w = where_.find(id);
        if (w == where_.end()) return;
        auto it = scopes_.find(w->second);
        if (it != scopes_.end()) it->second.remove_ids(std::span<const id_t>(&id, 1));
        where_.erase(w);
        if (count_ > 0) --count_;
    }
    void erase_row(id_t id) {
        auto del = db_.prepare("DELETE FROM semantic_cache WHERE id = ?1");
        del.bind(1, static_cast<std::int64_t>(id)).run();
        drop_from_index(id);
    }
    void rebuild() {
        const double now = detail::clock_now(opt_);
        auto del = db_.prepare("DELETE FROM semantic_cache WHERE expires IS NOT NULL AND expires <= ?1");
        del.bind(1, now).run();
        auto st = db_.prepare("SELECT id, scope, embedding FROM semantic_cache ORDER BY id");
        std::vector<float> v;
        while (st.step()) {
            const auto blob = st.blob(2);
            KITE_REQUIRE(blob.size() % sizeof(float) == 0 && !blob.empty(), format_error, "semantic_cache: ", db_.path(),
                         ": row ", st.int64(0), " has a ", blob.size(), "-byte embedding; expected whole float32 values");
            v.resize(blob.size() / sizeof(float));
            std::memcpy(v.data(), blob.data(), blob.size());
            KITE_REQUIRE(dim_ == 0 || v.size() == dim_, format_error, "semantic_cache: ", db_.path(), ": row ",
                         st.int64(0), " has a ", v.size(), "-d embedding, others ", dim_);
            dim_ = v.size();
            add_to_index(std::string(st.text(1)), static_cast<id_t>(st.int64(0)), v);
        }
    }

    semantic_cache_options opt_;
    Embedder embed_;
    sql::database db_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, index_type> scopes_;
    std::unordered_map<id_t, std::string> where_;
    std::size_t count_ = 0, dim_ = 0;
    cache_stats stats_;
};

/// The interface rag<> uses: lookup(prompt, scope) -> optional<cache_hit>, store(prompt,
/// scope, response, metadata).
template <class C>
concept answer_cache = requires(C& c, std::string_view s, const nlohmann::json& j) {
    { c.lookup(s, s) } -> std::same_as<std::optional<cache_hit>>;
    c.store(s, s, s, j);
};

/// No caching: every lookup misses.
struct no_cache {
    std::optional<cache_hit> lookup(std::string_view, std::string_view) { return std::nullopt; }
    void store(std::string_view, std::string_view, std::string_view, const nlohmann::json& = {}) {}
};

/// Two caches in order: lookup asks First, then Second; store writes both. References keep
/// the caches shared (tiered_cache<exact_cache&, semantic_cache<E>&>).
template <class First, class Second>
class tiered_cache {
public:
    tiered_cache(First a, Second b) : a_(std::forward<First>(a)), b_(std::forward<Second>(b)) {}
    std::optional<cache_hit> lookup(std::string_view prompt, std::string_view scope) {
        if (auto h = a_.lookup(prompt, scope)) return h;
        return b_.lookup(prompt, scope);
    }
    void store(std::string_view prompt, std::string_view scope, std::string_view response,
               const nlohmann::json& metadata = nlohmann::json::object()) {
        a_.store(prompt, scope, response, metadata);
        b_.store(prompt, scope, response, metadata);
    }
    First& first() noexcept { return a_; }
    Second& second() noexcept { return b_; }

private:
    First a_;
    Second b_;
};
template <class A, class B>
tiered_cache(A&, B&) -> tiered_cache<A&, B&>;

}  // namespace kite::app
