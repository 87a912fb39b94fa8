#pragma once
/// @file kite/app/exchange_log.hpp
/// Data logging for an LLM application: every question answered (the retrieved passages, the
/// prompt, the answer, the model and its sampling parameters, the cache outcome, the validation
/// decisions, the stage timings, the error) is one row in a SQLite table, written by a
/// background thread so that generation never waits on the disk for long.
///
///   kite::app::exchange_log log("app.sqlite");            // may share the file with the caches
///   kite::app::exchange e;
///   e.question = "Who wrote it?"; e.answer = "..."; e.model = "smollm2-360m";
///   e.timings_ms = {{"retrieval", 3.1}, {"ttft", 42.0}, {"total", 180.5}};
///   log.write(std::move(e));                               // enqueues; false when dropped
///   log.flush();                                           // everything accepted is committed
///
///   kite::app::log_reader r("app.sqlite");                 // read-only, safe beside the writer
///   auto s = r.summary();                                  // counts, hit rate, p50/p95/p99, ...
///   r.export_jsonl(std::cout);                             // one JSON object per line
///
/// Delivery rule: write() copies the exchange into a bounded queue. When the queue is full it
/// waits at most log_options::max_block, then drops the record (log_stats::dropped) and
/// returns false. The writer commits what it finds in the queue as one transaction (at most
/// log_options::batch rows). A transaction that fails (disk full, the file locked by another
/// process past the busy timeout) is retried log_options::retries times, log_options::retry_delay
/// apart, and then its rows are given up (log_stats::failed, last_error()); the writer carries on
/// with the next batch and the process is never stopped by the log. flush() returns once every
/// record accepted before it was called is committed or given up; close() and the destructor
/// flush and join, so a record write() accepted is never silently lost.
///
/// Table (schema "exchange_log", version 1, in kite_schema):
///   exchange_log(id INTEGER PRIMARY KEY, request_id, time REAL, question, retrieved JSON,
///                prompt, answer, model, params JSON, cache, validation JSON, timings_ms JSON,
///                error, failures INTEGER)          indexed by time and by request_id
/// JSON columns hold compact JSON text; `failures` is the number of validation decisions whose
/// verdict is not "pass" (so the summary parses validation only where something failed).
/// Strings are stored byte for byte; JSON output (export_jsonl, the JSON columns) replaces
/// invalid UTF-8 with U+FFFD instead of failing.
/// Needs SQLite 3 (link kite::app).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "kite/app/sqlite.hpp"
#include "kite/core/error.hpp"

namespace kite::app {

/// One passage the retriever returned for a question.
struct retrieved_passage {
    std::string doc_id;
    float score = 0;
};

/// One question answered (or not: `error` says why).
struct exchange {
    std::string request_id;                                 ///< unique; random 128-bit hex when empty at write()
    double time = 0;                                        ///< Unix seconds; now when 0 at write()
    std::string question;
    std::vector<retrieved_passage> retrieved;
    std::string prompt;
    std::string answer;
    std::string model;
    nlohmann::json params = nlohmann::json::object();       ///< sampling parameters
    std::string cache = "miss";                             ///< "miss" | "exact" | "semantic"
    nlohmann::json validation = nlohmann::json::array();    ///< decisions: {stage, verdict, findings[{rule, reason, action, score}]}
    nlohmann::json timings_ms = nlohmann::json::object();   ///< retrieval, prompt, ttft, generation, total
    std::string error;                                      ///< empty when answered
};

namespace detail {

/// Compact JSON text; invalid UTF-8 in strings becomes U+FFFD rather than an exception.
inline std::string dump_json(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// 128 random bits as 32 lowercase hex digits (a per-thread generator seeded from std::random_device).
inline std::string random_request_id() {
    thread_local std::mt19937_64 gen = [] {
        std::random_device rd;
        std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
        return std::mt19937_64(seq);
    }();
    static constexpr char hex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (int half = 0; half < 2; ++half) {
        std::uint64_t v = gen();
        for (int i = 0; i < 16; ++i, v >>= 4) id[static_cast<std::size_t>(half * 16 + i)] = hex[v & 15];
    }
    return id;
}

/// Validation decisions whose verdict is not "pass".
inline std::int64_t count_failures(const nlohmann::json& validation) {
    if (!validation.is_array()) return 0;
    std::int64_t n = 0;
    for (const auto& d : validation)
        if (d.is_object()) {
            const auto v = d.find("verdict");
            if (v == d.end() || !v->is_string() || v->get_ref<const std::string&>() != "pass") ++n;
        }
    return n;
}

/// `v` as a T; a value of the wrong type is a format_error naming the field.
template <class T>
T json_field(const nlohmann::json& j, const char* key, T def) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    try {
        return it->template get<T>();
    } catch (const nlohmann::json::exception& e) {
        kite::detail::raise<format_error>("exchange_from_json: field '", key, "': ", e.what());
    }
}

inline constexpr double no_limit = std::numeric_limits<double>::infinity();
inline constexpr std::string_view log_component = "exchange_log";
inline constexpr int log_schema_version = 1;

}  // namespace detail

/// The exchange as one JSON object (every field, under its own name; `retrieved` as
/// [{"doc_id", "score"}]).
inline nlohmann::json to_json(const exchange& e) {
    nlohmann::json retrieved = nlohmann::json::array();
    for (const auto& p : e.retrieved) retrieved.push_back({{"doc_id", p.doc_id}, {"score", p.score}});
    return {{"request_id", e.request_id}, {"time", e.time},         {"question", e.question},
            {"retrieved", std::move(retrieved)}, {"prompt", e.prompt}, {"answer", e.answer},
            {"model", e.model},           {"params", e.params},     {"cache", e.cache},
            {"validation", e.validation}, {"timings_ms", e.timings_ms}, {"error", e.error}};
}

/// The inverse of to_json. A missing field keeps its default; a field of the wrong type (or a
/// value that is not an object) is a kite::format_error naming it.
inline exchange exchange_from_json(const nlohmann::json& j) {
    KITE_REQUIRE(j.is_object(), format_error, "exchange_from_json: expected a JSON object, got ", j.type_name());
    exchange e;
    e.request_id = detail::json_field<std::string>(j, "request_id", {});
    e.time = detail::json_field<double>(j, "time", 0.0);
    e.question = detail::json_field<std::string>(j, "question", {});
    if (const auto it = j.find("retrieved"); it != j.end() && !it->is_null()) {
        KITE_REQUIRE(it->is_array(), format_error, "exchange_from_json: field 'retrieved': expected an array, got ",
                     it->type_name());
        for (const auto& p : *it) {
            KITE_REQUIRE(p.is_object(), format_error,
                         "exchange_from_json: field 'retrieved': expected objects {doc_id, score}, got ", p.type_name());
            e.retrieved.push_back({detail::json_field<std::string>(p, "doc_id", {}),
                                   static_cast<float>(detail::json_field<double>(p, "score", 0.0))});
        }
    }
    e.prompt = detail::json_field<std::string>(j, "prompt", {});
    e.answer = detail::json_field<std::string>(j, "answer", {});
    e.model = detail::json_field<std::string>(j, "model", {});
    e.params = j.value("params", nlohmann::json::object());
    e.cache = detail::json_field<std::string>(j, "cache", "miss");
    e.validation = j.value("validation", nlohmann::json::array());
    e.timings_ms = j.value("timings_ms", nlohmann::json::object());
    e.error = detail::json_field<std::string>(j, "error", {});
    return e;
}

/// How an exchange_log writes.
struct log_options {
    std::size_t queue_capacity = 4096;                  ///< records waiting for the writer, at most
    std::chrono::milliseconds max_block{50};            ///< write() waits this long for room, then drops
    std::size_t batch = 256;                            ///< rows per transaction, at most
    sql::durability sync = sql::durability::normal;     ///< see kite/app/sqlite.hpp
    int busy_timeout_ms = 5000;                         ///< wait this long for another connection's lock
    unsigned retries = 2;                               ///< a failed transaction is tried this many more times
    std::chrono::milliseconds retry_delay{100};         ///< between tries (doubling)
};

/// What an exchange_log has done so far. accepted = written + failed + (still queued).
struct log_stats {
    std::uint64_t accepted = 0;       ///< write() returned true
    std::uint64_t written = 0;        ///< committed
    std::uint64_t dropped = 0;        ///< write() returned false (queue full past max_block, or closed)
    std::uint64_t batches = 0;        ///< transactions committed
    std::uint64_t failed = 0;         ///< accepted but given up after a write error (last_error())
    std::uint64_t write_errors = 0;   ///< transaction attempts that failed (including retried ones)
};

/// Writes exchanges to SQLite from a writer thread: write() enqueues (bounded queue); when the
/// queue is full it waits at most max_block, then drops the record (counted) and returns false —
/// generation is never blocked for long. The writer commits batches, one transaction per batch.
/// flush() waits until everything accepted so far is committed (or given up after a write
/// error, see the file comment); close()/destructor flush and join: nothing accepted is lost.
/// Every member function is safe to call from any thread.
class exchange_log {
public:
    /// Opens (creating) `db` and brings its exchange_log table to the current schema; throws
    /// io_error when the file cannot be opened, format_error when it is not a database or was
    /// written by a newer kite, invalid_argument for a zero queue_capacity or batch.
    explicit exchange_log(const std::filesystem::path& db, log_options opt = {}) : opt_(opt) {
        KITE_REQUIRE(opt_.queue_capacity >= 1, invalid_argument, "exchange_log: queue_capacity = ",
                     opt_.queue_capacity, "; expected >= 1");
        KITE_REQUIRE(opt_.batch >= 1, invalid_argument, "exchange_log: batch = ", opt_.batch, "; expected >= 1");
        KITE_REQUIRE(opt_.max_block.count() >= 0, invalid_argument, "exchange_log: max_block = ",
                     opt_.max_block.count(), " ms; expected >= 0");
        KITE_REQUIRE(opt_.busy_timeout_ms >= 0, invalid_argument, "exchange_log: busy_timeout_ms = ",
                     opt_.busy_timeout_ms, "; expected >= 0");
        sql::open_options o;
        o.sync = opt_.sync;
        o.busy_timeout_ms = opt_.busy_timeout_ms;
        db_ = sql::database(db, o);
        migrate(db_);
        insert_ = db_.prepare(
            "INSERT INTO exchange_log (request_id, time, question, retrieved, prompt, answer, model, params, "
            "cache, validation, timings_ms, error, failures) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
            "?12, ?13)");
        // The connection and statement now belong to the writer thread alone.
        writer_ = std::thread([this] { run(); });
    }
    exchange_log(const exchange_log&) = delete;
    exchange_log& operator=(const exchange_log&) = delete;
    ~exchange_log() { close(); }

    /// Enqueues `e`, filling an empty request_id (random 128-bit hex) and a zero time (now).
    /// Returns false, counting the record as dropped, when the queue stayed full for max_block
    /// or the log is closed. Throws invalid_argument for a time that is not finite.
    bool write(exchange e) {
        KITE_REQUIRE(std::isfinite(e.time), invalid_argument, "exchange_log::write: time = ", e.time,
                     "; expected finite Unix seconds (0: now)");
        if (e.request_id.empty()) e.request_id = detail::random_request_id();
        if (e.time == 0) e.time = sql::unix_seconds();
        std::unique_lock lk(mu_);
        if (!closing_ && queue_.size() >= opt_.queue_capacity)
            not_full_.wait_for(lk, opt_.max_block, [&] { return closing_ || queue_.size() < opt_.queue_capacity; });
        if (closing_ || queue_.size() >= opt_.queue_capacity) {
            ++stats_.dropped;
            return false;
        }
        queue_.push_back(std::move(e));
        ++stats_.accepted;
        lk.unlock();
        not_empty_.notify_one();
        return true;
    }

    /// Waits until every record accepted before this call is committed (or given up).
    void flush() {
        std::unique_lock lk(mu_);
        const std::uint64_t target = stats_.accepted;
        done_cv_.wait(lk, [&] { return done_ >= target; });
    }

    /// Flushes, stops the writer thread and closes the database; later writes are dropped.
    /// Idempotent.
    void close() {
        {
            std::lock_guard lk(mu_);
            closing_ = true;
        }
        not_empty_.notify_all();
        not_full_.notify_all();
        std::lock_guard join_lock(join_mu_);
        if (writer_.joinable()) writer_.join();
    }

    log_stats stats() const {
        std::lock_guard lk(mu_);
        return stats_;
    }

    /// The message of the last failed transaction ("" when none failed).
    std::string last_error() const {
        std::lock_guard lk(mu_);
        return last_error_;
    }

    /// Creates or upgrades the exchange_log table in `db` (what the constructor does).
    static void migrate(sql::database& db) {
        db.migrate(detail::log_component,
                   {"CREATE TABLE exchange_log ("
                    " id INTEGER PRIMARY KEY,"
                    " request_id TEXT NOT NULL,"
                    " time REAL NOT NULL,"
                    " question TEXT NOT NULL,"
                    " retrieved TEXT NOT NULL,"
                    " prompt TEXT NOT NULL,"
                    " answer TEXT NOT NULL,"
                    " model TEXT NOT NULL,"
                    " params TEXT NOT NULL,"
                    " cache TEXT NOT NULL,"
                    " validation TEXT NOT NULL,"
                    " timings_ms TEXT NOT NULL,"
                    " error TEXT NOT NULL,"
                    " failures INTEGER NOT NULL DEFAULT 0);"
                    "CREATE INDEX exchange_log_time ON exchange_log (time);"
                    "CREATE INDEX exchange_log_request ON exchange_log (request_id);"});
    }

private:
    void run() {
        std::vector<exchange> batch;
        for (;;) {
            batch.clear();
            {
                std::unique_lock lk(mu_);
                not_empty_.wait(lk, [&] { return closing_ || !queue_.empty(); });
                if (queue_.empty()) break;  // closing, and everything is written
                const std::size_t n = std::min(opt_.batch, queue_.size());
                for (std::size_t i = 0; i < n; ++i) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
            not_full_.notify_all();
            bool ok = false;
            std::string why;
            unsigned errors = 0;
            for (unsigned attempt = 0; attempt <= opt_.retries && !ok; ++attempt) {
                if (attempt > 0) std::this_thread::sleep_for(opt_.retry_delay * (1LL << std::min(attempt - 1, 10u)));
                try {
                    commit(batch);
                    ok = true;
                } catch (const std::exception& e) {
                    why = e.what();
                    ++errors;
                } catch (...) {
                    why = "unknown exception";
                    ++errors;
                }
            }
            {
                std::lock_guard lk(mu_);
                done_ += batch.size();
                stats_.write_errors += errors;
                if (ok) {
                    stats_.written += batch.size();
                    ++stats_.batches;
                } else {
                    stats_.failed += batch.size();
                    last_error_ = "exchange_log: gave up " + std::to_string(batch.size()) + " records after " +
                                  std::to_string(errors) + " failed attempts: " + why;
                }
            }
            done_cv_.notify_all();
        }
        insert_ = sql::statement();
        db_.close();
    }

    void commit(const std::vector<exchange>& batch) {
        auto tx = db_.begin();
        for (const auto& e : batch) {
            nlohmann::json retrieved = nlohmann::json::array();
            for (const auto& p : e.retrieved) retrieved.push_back({{"doc_id", p.doc_id}, {"score", p.score}});
            insert_.reset().clear_bindings();
            insert_.bind(1, e.request_id).bind(2, e.time).bind(3, e.question).bind(4, detail::dump_json(retrieved));
            insert_.bind(5, e.prompt).bind(6, e.answer).bind(7, e.model).bind(8, detail::dump_json(e.params));
            insert_.bind(9, e.cache).bind(10, detail::dump_json(e.validation)).bind(11, detail::dump_json(e.timings_ms));
            insert_.bind(12, e.error).bind(13, detail::count_failures(e.validation));
            insert_.run();
        }
        tx.commit();
    }

    log_options opt_;
    sql::database db_;          // the writer thread's connection
    sql::statement insert_;     // (declared after db_: finalized first)
    mutable std::mutex mu_;     // guards everything below but writer_
    std::condition_variable not_empty_, not_full_, done_cv_;
    std::deque<exchange> queue_;
    std::uint64_t done_ = 0;    // accepted records committed or given up (FIFO, so a prefix)
    bool closing_ = false;
    log_stats stats_;
    std::string last_error_;
    std::mutex join_mu_;
    std::thread writer_;
};

/// What a stretch of the log says. Percentiles are nearest-rank: the p-th percentile of N
/// sorted values is the value at 1-based rank ceil(p * N / 100) (always one of the values).
struct log_summary {
    std::uint64_t count = 0;                                  ///< exchanges
    std::uint64_t errors = 0;                                 ///< exchanges with a non-empty error
    std::map<std::string, std::uint64_t> cache_outcomes;      ///< "miss", "exact", "semantic" -> exchanges
    double cache_hit_rate = 0;                                ///< exchanges whose cache is not "miss" / count (0 when empty)
    std::map<std::string, std::array<double, 3>> latency_ms;  ///< timing key -> p50, p95, p99 (numbers only)
    std::uint64_t validation_failures = 0;                    ///< decisions whose verdict is not "pass"
    std::map<std::string, std::uint64_t> failures_by_rule;    ///< rule -> failing decisions it has a finding in
    double first_time = 0, last_time = 0;                     ///< time span of the exchanges (0 when empty)
    std::uint64_t failed_exchanges = 0;                       ///< exchanges with at least one failing decision
    std::map<std::string, std::uint64_t> latency_samples;     ///< timing key -> values behind its percentiles
};

/// Reads a log that an exchange_log writes (read-only; safe while the writer runs: a reader sees
/// what was committed when each call began). Time ranges are half-open: since <= time < until.
class log_reader {
public:
    /// Opens `db` read-only: io_error when it cannot be opened (it does not exist), format_error
    /// when it is not a SQLite file, has no exchange log, or has one from a newer kite.
    explicit log_reader(const std::filesystem::path& db) {
        KITE_REQUIRE(std::filesystem::exists(db), io_error, "log_reader: ", db.string(), " does not exist");
        sql::open_options o;
        o.read_only = true;
        o.create = false;
        db_ = sql::database(db, o);
        auto has_table = [&](const char* name) {
            auto st = db_.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
            st.bind(1, name);
            return st.step();
        };
        int version = 0;
        if (has_table("kite_schema")) {
            auto st = db_.prepare("SELECT version FROM kite_schema WHERE component = ?1");
            st.bind(1, detail::log_component);
            if (st.step()) version = static_cast<int>(st.int64(0));
        }
        KITE_REQUIRE(version >= 1 && has_table("exchange_log"), format_error, "log_reader: ", db.string(),
                     ": not a kite exchange log (no exchange_log table)");
        KITE_REQUIRE(version <= detail::log_schema_version, format_error, "log_reader: ", db.string(),
                     ": exchange_log schema version ", version, "; this build reads versions up to ",
                     detail::log_schema_version);
    }

    /// Exchanges in the log.
    std::uint64_t count() {
        auto st = db_.prepare("SELECT count(*) FROM exchange_log");
        st.step();
        return static_cast<std::uint64_t>(st.int64(0));
    }

    /// Calls `f` on each exchange with since <= time < until, oldest first.
    void for_each(const std::function<void(const exchange&)>& f, double since = 0, double until = detail::no_limit) {
        check_range(since, until);
        auto st = db_.prepare(std::string(select_all) +
                              " WHERE time >= ?1 AND time < ?2 ORDER BY time, id");
        st.bind(1, since).bind(2, until);
        while (st.step()) f(row(st));
    }

    /// The last `n` exchanges (by time) in the whole log, oldest first.
    std::vector<exchange> recent(std::size_t n) { return recent(n, 0, detail::no_limit); }

    /// The last `n` exchanges with since <= time < until, oldest first.
    std::vector<exchange> recent(std::size_t n, double since, double until) {
        check_range(since, until);
        auto st = db_.prepare(std::string(select_all) +
                              " WHERE time >= ?1 AND time < ?2 ORDER BY time DESC, id DESC LIMIT ?3");
        st.bind(1, since).bind(2, until).bind(3, static_cast<std::int64_t>(std::min<std::size_t>(n, INT64_MAX)));
        std::vector<exchange> out;
        while (st.step()) out.push_back(row(st));
        std::reverse(out.begin(), out.end());
        return out;
    }

    /// The latest exchange with this request_id, if any.
    std::optional<exchange> find(std::string_view request_id) {
        auto st = db_.prepare(std::string(select_all) + " WHERE request_id = ?1 ORDER BY id DESC LIMIT 1");
        st.bind(1, request_id);
        if (!st.step()) return std::nullopt;
        return row(st);
    }

    /// Counts, cache outcomes, latency percentiles and validation failures over since <= time < until.
    log_summary summary(double since = 0, double until = detail::no_limit) {
        check_range(since, until);
        log_summary s;
        {
            auto st = db_.prepare(
                "SELECT cache, count(*), sum(error <> ''), min(time), max(time), sum(failures > 0), sum(failures) "
                "FROM exchange_log WHERE time >= ?1 AND time < ?2 GROUP BY cache");
            st.bind(1, since).bind(2, until);
            bool first = true;
            std::uint64_t hits = 0;
            while (st.step()) {
                const auto n = static_cast<std::uint64_t>(st.int64(1));
                const std::string cache(st.text(0));
                s.cache_outcomes[cache] += n;
                if (cache != "miss") hits += n;
                s.count += n;
                s.errors += static_cast<std::uint64_t>(st.int64(2));
                s.first_time = first ? st.real(3) : std::min(s.first_time, st.real(3));
                s.last_time = first ? st.real(4) : std::max(s.last_time, st.real(4));
                s.failed_exchanges += static_cast<std::uint64_t>(st.int64(5));
                s.validation_failures += static_cast<std::uint64_t>(st.int64(6));
                first = false;
            }
            s.cache_hit_rate = s.count ? static_cast<double>(hits) / static_cast<double>(s.count) : 0.0;
        }
        std::map<std::string, std::vector<double>> samples;
        auto st = db_.prepare(
            "SELECT id, timings_ms, CASE WHEN failures > 0 THEN validation ELSE NULL END "
            "FROM exchange_log WHERE time >= ?1 AND time < ?2");
        st.bind(1, since).bind(2, until);
        while (st.step()) {
            const auto timings = parse(st, 1, st.int64(0), "timings_ms");
            if (timings.is_object())
                for (const auto& [key, v] : timings.items())
                    if (v.is_number() && std::isfinite(v.get<double>())) samples[key].push_back(v.get<double>());
            if (st.is_null(2)) continue;
            const auto validation = parse(st, 2, st.int64(0), "validation");
            for (const auto& d : validation) {
                if (!d.is_object()) continue;
                const auto v = d.find("verdict");
                if (v != d.end() && v->is_string() && v->get_ref<const std::string&>() == "pass") continue;
                std::vector<std::string> rules;
                if (const auto f = d.find("findings"); f != d.end() && f->is_array())
                    for (const auto& finding : *f)
                        if (finding.is_object() && finding.contains("rule") && finding["rule"].is_string())
                            rules.push_back(finding["rule"].get<std::string>());
                if (rules.empty()) rules.push_back("(no finding)");
                std::sort(rules.begin(), rules.end());
                rules.erase(std::unique(rules.begin(), rules.end()), rules.end());
                for (const auto& r : rules) ++s.failures_by_rule[r];
            }
        }
        for (auto& [key, v] : samples) {
            std::sort(v.begin(), v.end());
            s.latency_ms[key] = {nearest_rank(v, 50), nearest_rank(v, 95), nearest_rank(v, 99)};
            s.latency_samples[key] = v.size();
        }
        return s;
    }

    /// Writes to_json of each exchange with since <= time < until, one per line, oldest first;
    /// returns the number of lines.
    std::size_t export_jsonl(std::ostream& out, double since = 0, double until = detail::no_limit) {
        std::size_t n = 0;
        for_each(
            [&](const exchange& e) {
                out << detail::dump_json(to_json(e)) << '\n';
                ++n;
            },
            since, until);
        out.flush();
        KITE_REQUIRE(out.good(), io_error, "log_reader::export_jsonl: ", db_.path(), ": the output stream failed after ",
                     n, " lines");
        return n;
    }

    const std::string& path() const noexcept { return db_.path(); }

private:
    static constexpr const char* select_all =
        "SELECT id, request_id, time, question, retrieved, prompt, answer, model, params, cache, validation, "
        "timings_ms, error FROM exchange_log";

    static void check_range(double since, double until) {
        KITE_REQUIRE(!std::isnan(since) && !std::isnan(until), invalid_argument, "log_reader: since = ", since,
                     ", until = ", until, "; expected numbers (Unix seconds)");
    }

    /// The nearest-rank p-th percentile of sorted, non-empty `v`.
    static double nearest_rank(const std::vector<double>& v, std::size_t p) {
        const std::size_t rank = std::max<std::size_t>(1, (p * v.size() + 99) / 100);  // ceil(p N / 100)
        return v[rank - 1];
    }

    nlohmann::json parse(const sql::statement& st, int col, std::int64_t id, const char* what) const {
        auto j = nlohmann::json::parse(st.text(col), nullptr, false);
        KITE_REQUIRE(!j.is_discarded(), format_error, "log_reader: ", db_.path(), ": exchange_log row ", id, ": ",
                     what, " is not valid JSON");
        return j;
    }

    exchange row(const sql::statement& st) const {
        const std::int64_t id = st.int64(0);
        try {
            return row_unchecked(st, id);
        } catch (const nlohmann::json::exception& ex) {
            kite::detail::raise<format_error>("log_reader: ", db_.path(), ": exchange_log row ", id, ": ", ex.what());
        }
    }

    exchange row_unchecked(const sql::statement& st, std::int64_t id) const {
        exchange e;
        e.request_id = st.text(1);
        e.time = st.real(2);
        e.question = st.text(3);
        for (const auto& p : parse(st, 4, id, "retrieved")) {
            KITE_REQUIRE(p.is_object(), format_error, "log_reader: ", db_.path(), ": exchange_log row ", id,
                         ": retrieved holds a ", p.type_name(), "; expected {doc_id, score} objects");
            e.retrieved.push_back({p.value("doc_id", std::string()), p.value("score", 0.0f)});
        }
        e.prompt = st.text(5);
        e.answer = st.text(6);
        e.model = st.text(7);
        e.params = parse(st, 8, id, "params");
        e.cache = st.text(9);
        e.validation = parse(st, 10, id, "validation");
        e.timings_ms = parse(st, 11, id, "timings_ms");
        e.error = st.text(12);
        return e;
    }

    sql::database db_;
};

}  // namespace kite::app
