// Tests of kite/app/exchange_log.hpp: the exchange record and its JSON round trip, the
// background writer (concurrency, the bounded queue, write errors), and log_reader (summary
// percentiles, JSON Lines export, files that are not kite logs).
#include <kite/app/exchange_log.hpp>

#include <random>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "kite_crash.hpp"

namespace ka = kite::app;
using nlohmann::json;

namespace {

/// An exchange with every field set, including UTF-8, an embedded NUL and a large string.
ka::exchange full_exchange() {
    ka::exchange e;
    e.request_id = "req-0001";
    e.time = 1714557600.125;
    e.question = "Qui a écrit « Le Petit Prince » ? 누가 썼나요? 🦊";
    e.retrieved = {{"doc-1", 0.875f}, {"문서-2", -1.5e-7f}, {"", 3.4028235e38f}};
    e.prompt = std::string("system\0prompt", 13) + std::string(1 << 20, 'x');  // 1 MiB
    e.answer = "Antoine de Saint-Exupéry — 생텍쥐페리.";
    e.model = "smollm2-360m-instruct";
    e.params = {{"temperature", 0.7}, {"top_p", 0.95}, {"max_tokens", 256}, {"stop", {"\n\n", "끝"}}};
    e.cache = "semantic";
    e.validation = json::array(
        {{{"stage", "input"}, {"verdict", "pass"}, {"findings", json::array()}},
         {{"stage", "output"},
          {"verdict", "mask"},
          {"findings", {{{"rule", "pii"}, {"reason", "e-mail address → masked"}, {"action", "mask"}, {"score", 0}}}}}});
    e.timings_ms = {{"retrieval", 3.25}, {"prompt", 0.5}, {"ttft", 41.0}, {"generation", 180.0}, {"total", 225.125}};
    e.error = "";
    return e;
}

void check_same(const ka::exchange& a, const ka::exchange& b) {
    CHECK(a.request_id == b.request_id);
    CHECK(a.time == b.time);
    CHECK(a.question == b.question);
    REQUIRE(a.retrieved.size() == b.retrieved.size());
    for (std::size_t i = 0; i < a.retrieved.size(); ++i) {
        CHECK(a.retrieved[i].doc_id == b.retrieved[i].doc_id);
        CHECK(a.retrieved[i].score == b.retrieved[i].score);
    }
    CHECK(a.prompt == b.prompt);
    CHECK(a.answer == b.answer);
    CHECK(a.model == b.model);
    CHECK(a.params == b.params);
    CHECK(a.cache == b.cache);
    CHECK(a.validation == b.validation);
    CHECK(a.timings_ms == b.timings_ms);
    CHECK(a.error == b.error);
}

/// An exchange at `time` with a total latency, a cache outcome and optional validation.
ka::exchange simple(double time, double total_ms, std::string cache = "miss", json validation = json::array(),
                    std::string error = "") {
    ka::exchange e;
    e.time = time;
    e.question = "q" + std::to_string(time);
    e.cache = std::move(cache);
    e.timings_ms = {{"total", total_ms}};
    e.validation = std::move(validation);
    e.error = std::move(error);
    return e;
}

json decision(const std::string& verdict, std::vector<std::string> rules) {
    json findings = json::array();
    for (auto& r : rules) findings.push_back({{"rule", r}, {"reason", "because"}, {"action", verdict}, {"score", 0.5}});
    return {{"stage", "output"}, {"verdict", verdict}, {"findings", findings}};
}

}  // namespace

TEST_CASE("exchange: to_json and exchange_from_json round trip every field", "[app][log]") {
    const auto e = full_exchange();
    check_same(ka::exchange_from_json(ka::to_json(e)), e);
    // Through text, as export_jsonl writes it.
    check_same(ka::exchange_from_json(json::parse(ka::to_json(e).dump())), e);
    // Defaults survive too.
    const ka::exchange empty;
    check_same(ka::exchange_from_json(ka::to_json(empty)), empty);
    CHECK(ka::exchange_from_json(json::object()).cache == "miss");
    KITE_REQUIRE_THROWS_CONTAINING(ka::exchange_from_json(json::array()), kite::format_error, "expected a JSON object");
    KITE_REQUIRE_THROWS_CONTAINING(ka::exchange_from_json(json{{"question", 3}}), kite::format_error, "'question'");
    KITE_REQUIRE_THROWS_CONTAINING(ka::exchange_from_json(json{{"retrieved", "doc"}}), kite::format_error,
                                   "'retrieved'");
}

TEST_CASE("exchange_log: every field survives the database", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "log.sqlite";
    const auto e = full_exchange();
    ka::exchange blank;  // no id, no time: filled at write
    blank.cache = "exact";
    const double before = kite::app::sql::unix_seconds();
    {
        ka::exchange_log log(db);
        CHECK(log.write(e));
        CHECK(log.write(blank));
        log.close();
        CHECK(log.stats().written == 2);
        CHECK(log.last_error().empty());
    }
    ka::log_reader r(db);
    REQUIRE(r.count() == 2);
    const auto found = r.find("req-0001");
    REQUIRE(found);
    check_same(*found, e);
    const auto all = r.recent(10);
    REQUIRE(all.size() == 2);
    check_same(all[0], e);  // oldest first: e's time is in the past
    CHECK(all[1].request_id.size() == 32);
    CHECK(all[1].request_id.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(all[1].time >= before);
    CHECK(all[1].cache == "exact");
    CHECK(all[1].question.empty());
    CHECK(all[1].params == json::object());
    CHECK(all[1].validation == json::array());
    CHECK(r.recent(1).size() == 1);
    CHECK(r.recent(1)[0].request_id == all[1].request_id);
    CHECK(r.recent(0).empty());
    CHECK_FALSE(r.find("no-such-request"));
}

TEST_CASE("exchange_log: concurrent writers lose nothing they were promised", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "log.sqlite";
    constexpr int threads = 8, per_thread = 400;
    std::vector<std::vector<std::string>> accepted(threads);
    ka::log_stats st;
    {
        ka::log_options opt;
        opt.queue_capacity = 64;  // small, so writers do meet a full queue
        opt.batch = 16;
        opt.max_block = std::chrono::milliseconds(2000);
        ka::exchange_log log(db, opt);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    ka::exchange e;
                    e.question = std::to_string(t) + "-" + std::to_string(i);  // ("t" + ...: GCC 12 -Wrestrict noise)
                    e.timings_ms = {{"total", i}};
                    if (log.write(e)) accepted[static_cast<std::size_t>(t)].push_back(e.question);
                }
            });
        for (auto& th : pool) th.join();
        log.close();
        st = log.stats();
        CHECK_FALSE(log.write(ka::exchange{}));  // closed: dropped, not an error
        CHECK(log.stats().dropped == st.dropped + 1);
    }
    std::set<std::string> promised;
    for (const auto& v : accepted) promised.insert(v.begin(), v.end());
    CHECK(st.accepted + st.dropped == threads * per_thread);
    CHECK(st.accepted == promised.size());
    CHECK(st.written == st.accepted);
    CHECK(st.failed == 0);
    CHECK(st.batches >= 1);

    ka::log_reader r(db);
    CHECK(r.count() == st.accepted);
    std::set<std::string> stored, ids;
    r.for_each([&](const ka::exchange& e) {
        stored.insert(e.question);
        ids.insert(e.request_id);
    });
    CHECK(stored == promised);
    CHECK(ids.size() == st.accepted);  // request ids unique
}

TEST_CASE("exchange_log: a full queue drops after max_block; what was accepted is written later", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "log.sqlite";
    ka::log_options opt;
    opt.queue_capacity = 2;
    opt.batch = 1;
    opt.max_block = std::chrono::milliseconds(10);
    opt.busy_timeout_ms = 600000;  // the writer waits for the lock rather than failing
    ka::exchange_log log(db, opt);

    // Another connection holds the write lock: the writer's BEGIN IMMEDIATE waits.
    kite::app::sql::database blocker(db);
    blocker.exec("BEGIN IMMEDIATE");
    int attempts = 0, ok = 0;
    bool refused = false;
    while (!refused && attempts < 1000) {  // capacity + one batch in the writer's hands, then refusals
        ++attempts;
        if (log.write(simple(1000.0 + attempts, attempts))) {
            ++ok;
        } else {
            refused = true;
        }
    }
    REQUIRE(refused);
    CHECK(ok <= static_cast<int>(opt.queue_capacity + opt.batch));
    CHECK(log.write(simple(5000, 1)) == false);  // still full
    auto st = log.stats();
    CHECK(st.dropped == 2);
    CHECK(st.accepted == static_cast<std::uint64_t>(ok));
    CHECK(st.written == 0);

    blocker.exec("COMMIT");
    log.flush();
    st = log.stats();
    CHECK(st.written == static_cast<std::uint64_t>(ok));
    CHECK(st.failed == 0);
    CHECK(log.write(simple(6000, 1)));  // room again
    log.close();
    CHECK(log.stats().written == static_cast<std::uint64_t>(ok + 1));
    CHECK(ka::log_reader(db).count() == static_cast<std::uint64_t>(ok + 1));
}

TEST_CASE("exchange_log: a failing transaction is given up and counted; the writer carries on", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "log.sqlite";
    ka::log_options opt;
    opt.busy_timeout_ms = 1;
    opt.retries = 1;
    opt.retry_delay = std::chrono::milliseconds(1);
    ka::exchange_log log(db, opt);
    {
        kite::app::sql::database blocker(db);
        blocker.exec("BEGIN IMMEDIATE");
        CHECK(log.write(simple(100, 1)));
        CHECK(log.write(simple(101, 1)));
        log.flush();  // returns: the records are given up, not stuck
        const auto st = log.stats();
        CHECK(st.failed + st.written == 2);
        CHECK(st.failed >= 1);
        CHECK(st.write_errors >= 2);  // the first try and its retry
        CHECK(log.last_error().find("locked") != std::string::npos);
        blocker.exec("ROLLBACK");
    }
    const auto before = log.stats();
    CHECK(log.write(simple(102, 1)));
    log.flush();
    CHECK(log.stats().written == before.written + 1);
    log.close();
    CHECK(ka::log_reader(db).count() == log.stats().written);
}

TEST_CASE("log_reader: summary against a hand computation", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "log.sqlite";
    {
        ka::exchange_log log(db);
        // 20 exchanges at t = 101..120, total latency a permutation of 1..20 ms (time order 7, 14, ...).
        for (int i = 1; i <= 20; ++i) {
            const double total = static_cast<double>((i * 7) % 20 + 1);
            std::string cache = i % 4 == 0 ? "exact" : i % 5 == 0 ? "semantic" : "miss";
            json validation = json::array({decision("pass", {})});
            if (i == 3) validation.push_back(decision("mask", {"pii", "pii", "email"}));  // pii counted once
            if (i == 7) validation.push_back(decision("block", {"topic"}));
            if (i == 8) validation.push_back(decision("block", {}));
            if (i == 9) validation = json::array({decision("mask", {"pii"}), decision("block", {"topic"})});
            auto e = simple(100.0 + i, total, cache, validation, i == 11 || i == 12 ? "model timed out" : "");
            if (i <= 3) e.timings_ms["ttft"] = 10.0 * i;  // 10, 20, 30
            if (i == 4) e.timings_ms["ttft"] = "n/a";     // not a number: ignored
            REQUIRE(log.write(e));
        }
        ka::exchange_log other(db);  // a second log on the same file adds to the same table
        REQUIRE(other.write(simple(500, 1000, "miss")));
    }
    ka::log_reader r(db);
    const auto s = r.summary(0, 200);  // leaves out t = 500
    CHECK(s.count == 20);
    CHECK(s.errors == 2);
    // i % 4 == 0: 4 8 12 16 20 -> exact (5); i % 5 == 0 and not % 4: 5 10 15 -> semantic (3).
    CHECK(s.cache_outcomes == std::map<std::string, std::uint64_t>{{"exact", 5}, {"miss", 12}, {"semantic", 3}});
    CHECK(s.cache_hit_rate == Approx(8.0 / 20.0));
    // Nearest rank over 1..20: p50 -> rank 10, p95 -> rank 19, p99 -> rank 20.
    REQUIRE(s.latency_ms.count("total"));
    CHECK(s.latency_ms.at("total") == std::array<double, 3>{10, 19, 20});
    CHECK(s.latency_samples.at("total") == 20);
    // ttft {10, 20, 30}: p50 -> rank 2, p95 and p99 -> rank 3.
    CHECK(s.latency_ms.at("ttft") == std::array<double, 3>{20, 30, 30});
    CHECK(s.latency_samples.at("ttft") == 3);
    CHECK(s.validation_failures == 5);  // i = 3, 7, 8 one each; i = 9 two
    CHECK(s.failed_exchanges == 4);
    CHECK(s.failures_by_rule ==
          std::map<std::string, std::uint64_t>{{"(no finding)", 1}, {"email", 1}, {"pii", 2}, {"topic", 2}});
    CHECK(s.first_time == 101);
    CHECK(s.last_time == 120);

    // A narrower window: t in [105, 110) -> i = 5..9, totals 16 3 10 17 4 -> sorted 3 4 10 16 17.
    const auto w = r.summary(105, 110);
    CHECK(w.count == 5);
    CHECK(w.latency_ms.at("total") == std::array<double, 3>{10, 17, 17});
    CHECK(w.first_time == 105);
    CHECK(w.last_time == 109);
    // The whole log; and an empty window.
    CHECK(r.summary().count == 21);
    CHECK(r.summary().latency_ms.at("total")[2] == 1000);
    const auto none = r.summary(1000, 2000);
    CHECK(none.count == 0);
    CHECK(none.cache_hit_rate == 0);
    CHECK(none.latency_ms.empty());
    CHECK(none.first_time == 0);
    CHECK_THROWS_AS(r.summary(std::nan(""), 1), kite::invalid_argument);
}

TEST_CASE("log_reader: export_jsonl writes one exchange per line", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "log.sqlite";
    {
        ka::exchange_log log(db);
        REQUIRE(log.write(full_exchange()));
        for (int i = 0; i < 9; ++i) REQUIRE(log.write(simple(2000.0 + i, i)));
        auto bad = simple(3000, 1);
        bad.request_id = "bad-utf8";
        bad.answer = "truncated \xE2\x82";  // invalid UTF-8 from a cut-off token: replaced, never fatal
        REQUIRE(log.write(bad));
    }
    ka::log_reader r(db);
    std::ostringstream out;
    CHECK(r.export_jsonl(out) == 11);
    std::vector<ka::exchange> stored;
    r.for_each([&](const ka::exchange& e) { stored.push_back(e); });
    std::istringstream in(out.str());
    std::string line;
    std::size_t n = 0;
    bool saw_replaced = false;
    while (std::getline(in, line)) {
        REQUIRE(n < stored.size());
        const auto e = ka::exchange_from_json(json::parse(line));
        if (e.request_id != "bad-utf8") {
            check_same(e, stored[n]);
        } else {
            CHECK(e.answer == "truncated \xEF\xBF\xBD");  // U+FFFD
            saw_replaced = true;
        }
        ++n;
    }
    CHECK(n == 11);
    CHECK(saw_replaced);
    std::ostringstream window;
    CHECK(r.export_jsonl(window, 2003, 2006) == 3);
    const std::string lines = window.str();
    CHECK(std::count(lines.begin(), lines.end(), '\n') == 3);
}

TEST_CASE("log_reader: refuses files that are not kite exchange logs", "[app][log]") {
    kite::test::temp_dir dir;
    KITE_REQUIRE_THROWS_CONTAINING(ka::log_reader(dir / "missing.sqlite"), kite::io_error, "missing.sqlite");

    const auto other = dir / "other.sqlite";
    {
        kite::app::sql::database db(other);
        db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)");
    }
    KITE_REQUIRE_THROWS_CONTAINING(ka::log_reader(other), kite::format_error, "not a kite exchange log");

    const auto noise = dir / "noise.sqlite";
    {
        std::ofstream f(noise, std::ios::binary);
        std::mt19937 g(7);
        for (int i = 0; i < 8192; ++i) f.put(static_cast<char>(g()));
    }
    CHECK_THROWS_AS(ka::log_reader(noise), kite::format_error);
    CHECK_THROWS_AS(ka::exchange_log(noise), kite::format_error);

    const auto empty = dir / "empty.sqlite";
    std::ofstream(empty).close();
    CHECK_THROWS_AS(ka::log_reader(empty), kite::format_error);

    const auto newer = dir / "newer.sqlite";
    {
        ka::exchange_log log(newer);
        REQUIRE(log.write(simple(1, 1)));
    }
    {
        kite::app::sql::database db(newer);
        db.exec("UPDATE kite_schema SET version = 99 WHERE component = 'exchange_log'");
    }
    KITE_REQUIRE_THROWS_CONTAINING(ka::log_reader(newer), kite::format_error, "schema version 99");
    KITE_REQUIRE_THROWS_CONTAINING(ka::exchange_log(newer), kite::format_error, "schema version 99");
}

TEST_CASE("exchange_log: shares a file with other kite tables; reads beside a live writer", "[app][log]") {
    kite::test::temp_dir dir;
    const auto db = dir / "app.sqlite";
    {
        kite::app::sql::database d(db);
        d.migrate("exact_cache", {"CREATE TABLE exact_cache (key TEXT PRIMARY KEY, response TEXT)"});
        d.exec("INSERT INTO exact_cache VALUES ('k', 'v')");
    }
    ka::exchange_log log(db);
    REQUIRE(log.write(simple(10, 1)));
    log.flush();
    ka::log_reader r(db);  // while the writer is open
    CHECK(r.count() == 1);
    REQUIRE(log.write(simple(11, 2)));
    log.flush();
    CHECK(r.count() == 2);
    log.close();
    kite::app::sql::database d(db);
    CHECK(d.schema_version("exact_cache") == 1);
    CHECK(d.schema_version("exchange_log") == 1);
    auto st = d.prepare("SELECT count(*) FROM exact_cache");
    REQUIRE(st.step());
    CHECK(st.int64(0) == 1);
}

TEST_CASE("exchange_log: bad options and bad records name the value", "[app][log]") {
    kite::test::temp_dir dir;
    ka::log_options opt;
    opt.queue_capacity = 0;
    KITE_REQUIRE_THROWS_CONTAINING(ka::exchange_log(dir / "a.sqlite", opt), kite::invalid_argument,
                                   "queue_capacity = 0");
    opt = {};
    opt.batch = 0;
    KITE_REQUIRE_THROWS_CONTAINING(ka::exchange_log(dir / "a.sqlite", opt), kite::invalid_argument, "batch = 0");
    ka::exchange_log log(dir / "a.sqlite");
    KITE_REQUIRE_THROWS_CONTAINING(log.write(simple(std::nan(""), 1)), kite::invalid_argument, "time = nan");
    CHECK(log.stats().accepted == 0);
}

// Not run by default: writes a small log for the kite-log smoke test (examples/app.cmake) to
// the file named by KITE_LOG_DEMO_DB.
TEST_CASE("exchange_log: demo log for kite-log", "[.kite_log_demo]") {
    const char* path = std::getenv("KITE_LOG_DEMO_DB");
    REQUIRE(path != nullptr);
    std::filesystem::remove(path);
    ka::exchange_log log(path);
    for (int i = 1; i <= 20; ++i) {
        auto e = simple(1714557600.0 + i, static_cast<double>((i * 7) % 20 + 1), i % 4 == 0 ? "exact" : "miss",
                        json::array({decision(i == 3 ? "mask" : "pass", i == 3 ? std::vector<std::string>{"pii"}
                                                                               : std::vector<std::string>{})}),
                        i == 11 ? "model timed out" : "");
        e.question = "Question n° " + std::to_string(i) + " — ça marche ?";
        e.answer = "Answer " + std::to_string(i);
        REQUIRE(log.write(e));
    }
    log.close();
    REQUIRE(log.stats().written == 20);
}

// A logging process killed with SIGKILL: every exchange flushed before the kill is in the
// database, which opens cleanly; at most the batch in flight is missing.
TEST_CASE("exchange log: SIGKILL during a stream of writes loses nothing flushed", "[app][log][crash]") {
    std::mt19937 rng(7);
    for (int round = 0; round < (kite::test::reduced_run() ? 2 : 6); ++round) {
        kite::test::temp_dir dir;
        const auto file = dir / "log.sqlite";
        const int target = std::uniform_int_distribution<int>(10, 200)(rng);
        const int acked = kite::test::run_and_kill(
            [&](auto ack) {
                ka::exchange_log log(file);
                for (int i = 0;; ++i) {
                    ka::exchange e;
                    e.question = "question " + std::to_string(i);
                    e.answer = std::string(100 + i % 300, 'a');
                    log.write(std::move(e));
                    if (i % 5 == 4) {
                        log.flush();
                        ack(i);
                    }
                }
            },
            target, std::chrono::microseconds(0));
        INFO("round " << round << ": " << acked + 1 << " exchanges flushed before the kill");
        {
            kite::app::sql::database db(file);
            CHECK(db.integrity_check() == "ok");
        }
        ka::log_reader reader(file);
        const auto n = reader.count();
        CHECK(n >= static_cast<std::uint64_t>(acked + 1));
        std::set<std::string> questions;
        reader.for_each([&](const ka::exchange& e) { questions.insert(e.question); });
        for (int i = 0; i <= acked; ++i) CHECK(questions.count("question " + std::to_string(i)) == 1);
    }
}
