// kite/app/sqlite.hpp and kite/app/llm_cache.hpp: the SQLite layer (schemas, errors on foreign
// files), the exact cache (byte-identical hits, scope misses, TTL, LRU bound, persistence), the
// semantic cache (threshold, scopes, eviction, rebuild at open) with a deterministic embedder
// and with all-MiniLM-L6-v2, and the crash test: a writer process killed with SIGKILL at random
// points loses at most the write in flight and leaves a database that opens cleanly.
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kite/app/llm_cache.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite_crash.hpp"

namespace ka = kite::app;
using kite::test::temp_dir;

namespace {

// A deterministic embedder: letter counts a..z of the lower-cased ASCII text (texts made of the
// same letters are near, others far), plus a constant so no vector is zero.
struct letter_embedder {
    std::vector<float> operator()(std::string_view s) const {
        std::vector<float> v(27, 0.0f);
        v[26] = 0.5f;
        for (char c : s) {
            const char l = static_cast<char>(c | 0x20);
            if (l >= 'a' && l <= 'z') v[static_cast<std::size_t>(l - 'a')] += 1.0f;
        }
        double n = 0;
        for (float x : v) n += double(x) * x;
        for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
        return v;
    }
};

struct fake_clock {
    double now = 1.0e9;
    std::function<double()> fn() {
        return [this] { return now; };
    }
};

std::string response_for(int i) {
    // Non-ASCII, new lines and a long tail: a hit must give back every byte.
    return "answer " + std::to_string(i) + " — café\n\t[doc" + std::to_string(i * 7) + "]" + std::string(200 + i % 50, 'x');
}

}  // namespace

TEST_CASE("sql: schemas are versioned per component; foreign and newer files are refused", "[app][sqlite]") {
    temp_dir dir;
    const auto file = dir / "a.sqlite";
    {
        ka::sql::database db(file);
        db.migrate("demo", {"CREATE TABLE demo (x INTEGER)"});
        CHECK(db.schema_version("demo") == 1);
        db.migrate("demo", {"CREATE TABLE demo (x INTEGER)", "ALTER TABLE demo ADD COLUMN y TEXT"});
        CHECK(db.schema_version("demo") == 2);
        auto st = db.prepare("INSERT INTO demo (x, y) VALUES (?1, ?2)");
        st.bind(1, 7).bind(2, "seven").run();
        CHECK(db.integrity_check() == "ok");
    }
    {
        ka::sql::database db(file);
        // A file written by a newer kite (version 2 on a build that knows only version 1).
        KITE_REQUIRE_THROWS_CONTAINING(db.migrate("demo", {"CREATE TABLE demo (x INTEGER)"}), kite::format_error,
                                       "demo schema version 2; this build reads versions up to 1");
        // A failed statement rolls its transaction back and names the file.
        KITE_REQUIRE_THROWS_CONTAINING(db.exec("INSERT INTO no_such_table VALUES (1)"), kite::io_error, "a.sqlite");
    }
    // Not a database at all.
    const auto junk = dir / "junk.sqlite";
    {
        std::ofstream out(junk, std::ios::binary);
        std::mt19937 rng(5);
        for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(rng()));
    }
    KITE_REQUIRE_THROWS_CONTAINING(ka::exact_cache(junk), kite::format_error, "junk.sqlite");
    // A folder that does not exist.
    KITE_REQUIRE_THROWS_CONTAINING(ka::exact_cache(dir / "no" / "such" / "dir.sqlite"), kite::io_error, "dir.sqlite");
}

TEST_CASE("normalize_prompt: NFC, white space folded, trimmed; case only with casefold", "[app][cache]") {
    CHECK(ka::normalize_prompt("  What   is\tRAG?\n") == "What is RAG?");
    CHECK(ka::normalize_prompt("caf\xC3\xA9") == ka::normalize_prompt("cafe\xCC\x81"));  // é: composed = decomposed
    CHECK(ka::normalize_prompt("a\xC2\xA0\xE3\x80\x80" "b") == "a b");                    // NBSP, ideographic space
    CHECK(ka::normalize_prompt("Hello World") != ka::normalize_prompt("hello world"));
    CHECK(ka::normalize_prompt("Hello World", true) == ka::normalize_prompt("hello world", true));
    CHECK(ka::normalize_prompt(" \n ").empty());
    KITE_REQUIRE_THROWS_CONTAINING(ka::normalize_prompt("bad \xC3"), kite::unicode_error, "normalize_prompt");
}

TEST_CASE("exact cache: byte-identical hits, parameter changes miss, persists across opens", "[app][cache]") {
    temp_dir dir;
    const auto file = dir / "c.sqlite";
    const std::string s1 = ka::cache_scope("smollm2", {{"temperature", 0}, {"max_tokens", 64}});
    const std::string s1_again = ka::cache_scope("smollm2", {{"max_tokens", 64}, {"temperature", 0}});
    const std::string s2 = ka::cache_scope("smollm2", {{"temperature", 0}, {"max_tokens", 65}});
    const std::string s3 = ka::cache_scope("other-model", {{"temperature", 0}, {"max_tokens", 64}});
    CHECK(s1 == s1_again);
    {
        ka::exact_cache c(file);
        CHECK_FALSE(c.lookup("What is RAG?", s1));
        c.store("What is RAG?", s1, response_for(1), {{"citations", {"d1", "d2"}}});
        auto h = c.lookup("What is RAG?", s1);
        REQUIRE(h);
        CHECK(h->response == response_for(1));
        CHECK(h->outcome == ka::cache_outcome::exact);
        CHECK(h->metadata["citations"][1] == "d2");
        CHECK(h->hits == 1);
        CHECK(c.lookup("  What is   RAG? ", s1));       // same after normalisation
        CHECK_FALSE(c.lookup("what is rag?", s1));      // case kept by default
        CHECK_FALSE(c.lookup("What is RAG?", s2));      // max_tokens differs
        CHECK_FALSE(c.lookup("What is RAG?", s3));      // model differs
        // Replacing keeps one entry.
        c.store("What is RAG?", s1, response_for(2));
        CHECK(c.size() == 1);
        CHECK(c.lookup("What is RAG?", s1)->response == response_for(2));
        const auto st = c.stats();
        CHECK(st.lookups == 7);
        CHECK(st.hits == 3);
        CHECK(st.misses == 4);
    }
    ka::exact_cache reopened(file);
    CHECK(reopened.size() == 1);
    const auto h = reopened.lookup("What is RAG?", s1);
    REQUIRE(h);
    CHECK(h->response == response_for(2));
    CHECK(h->hits == 2);
    KITE_REQUIRE_THROWS_CONTAINING(reopened.store("q", s1, "bad \xFF"), kite::unicode_error, "response");
    KITE_REQUIRE_THROWS_CONTAINING(ka::exact_cache(dir / "d.sqlite", {.max_entries = 0}), kite::invalid_argument,
                                   "max_entries = 0");
}

TEST_CASE("exact cache: time-to-live and the least-recently-used bound hold", "[app][cache]") {
    temp_dir dir;
    fake_clock clk;
    ka::exact_cache c(dir / "c.sqlite", {.ttl_seconds = 60, .max_entries = 3, .clock = clk.fn()});
    const std::string s = ka::cache_scope("m");
    c.store("a", s, "A");
    clk.now += 1;
    c.store("b", s, "B");
    clk.now += 1;
    c.store("c", s, "C");
    clk.now += 1;
    CHECK(c.lookup("a", s));  // a is now the most recently used
    clk.now += 1;
    c.store("d", s, "D");     // evicts b, the least recently used
    CHECK(c.size() == 3);
    CHECK(c.stats().evictions == 1);
    CHECK_FALSE(c.lookup("b", s));
    CHECK(c.lookup("a", s));
    CHECK(c.lookup("c", s));
    CHECK(c.lookup("d", s));
    // TTL counts from store(): c was stored at t0 + 2, so it expires at t0 + 62.
    clk.now = 1.0e9 + 61.5;
    CHECK(c.lookup("c", s));
    clk.now = 1.0e9 + 62.5;
    CHECK_FALSE(c.lookup("c", s));
    CHECK(c.stats().expired == 1);
    CHECK(c.size() == 2);
    clk.now = 1.0e9 + 1000;
    CHECK(c.remove_expired() == 2);
    CHECK(c.size() == 0);
}

TEST_CASE("semantic cache: threshold, scopes, eviction and rebuild at open", "[app][cache]") {
    temp_dir dir;
    const auto file = dir / "s.sqlite";
    const std::string s = ka::cache_scope("m"), other = ka::cache_scope("m", {{"temperature", 1}});
    const letter_embedder e;
    {
        ka::semantic_cache<letter_embedder> c(file, e, {{.max_entries = 3}, 0.97});
        c.store("listen", s, "anagram answer", {{"k", 1}});
        c.store("zzzz qqqq", s, "far answer");
        // "silent" has the same letters as "listen": cosine 1.
        auto h = c.lookup("silent", s);
        REQUIRE(h);
        CHECK(h->outcome == ka::cache_outcome::semantic);
        CHECK(h->response == "anagram answer");
        CHECK(h->matched_prompt == "listen");
        CHECK(h->similarity == Approx(1.0).margin(1e-6));
        CHECK(h->metadata["k"] == 1);
        // Another scope sees nothing.
        CHECK_FALSE(c.lookup("silent", other));
        // A near but different text: its cosine (0.954) is below 0.97.
        const auto v = c.embed("listens");
        const double near = c.nearest_similarity(v, s);
        CHECK(near < 0.97);
        CHECK(near > 0.8);
        CHECK_FALSE(c.lookup("listens", s));
        c.set_threshold(near - 1e-6);
        CHECK(c.lookup("listens", s));
        c.set_threshold(0.97);
        // The bound: two more entries evict the least recently used ("zzzz qqqq").
        c.store("abc", s, "abc answer");
        c.store("xyz", other, "xyz answer");
        CHECK(c.size() == 3);
        CHECK_FALSE(c.lookup("qqqq zzzz", s));
        CHECK(c.lookup("cab", s));
        CHECK(c.lookup("zyx", other));
        KITE_REQUIRE_THROWS_CONTAINING(c.lookup_vector(std::vector<float>(5, 0.1f), s), kite::shape_error,
                                       "dimension 5");
    }
    // Reopened: the index is rebuilt from the table.
    ka::semantic_cache<const letter_embedder&> c(file, e, {{}, 0.95});
    CHECK(c.size() == 3);
    auto h = c.lookup("enlist", s);
    REQUIRE(h);
    CHECK(h->response == "anagram answer");
    CHECK(c.lookup("zyx", other)->response == "xyz answer");
    // tiered: exact first, then semantic.
    ka::exact_cache exact(file);
    ka::tiered_cache both(exact, c);
    both.store("tinsel", s, "stored in both");
    CHECK(both.lookup("tinsel", s)->outcome == ka::cache_outcome::exact);
    CHECK(both.lookup("silent", s)->outcome == ka::cache_outcome::semantic);
}

TEST_CASE("semantic cache: expired entries never hit and are gone after reopening", "[app][cache]") {
    temp_dir dir;
    fake_clock clk;
    const letter_embedder e;
    const std::string s = ka::cache_scope("m");
    {
        ka::semantic_cache<letter_embedder> c(dir / "s.sqlite", e, {{.ttl_seconds = 10, .clock = clk.fn()}, 0.95});
        c.store("listen", s, "A");
        clk.now += 9;
        CHECK(c.lookup("silent", s));
        clk.now += 2;
        CHECK_FALSE(c.lookup("silent", s));
        CHECK(c.size() == 0);
        c.store("listen", s, "B");
    }
    clk.now += 100;
    ka::semantic_cache<letter_embedder> c(dir / "s.sqlite", e, {{.ttl_seconds = 10, .clock = clk.fn()}, 0.95});
    CHECK(c.size() == 0);
}

// The crash test. A child process stores entries in both caches and acknowledges each store on
// a pipe after it returned; the parent kills it with SIGKILL at a random moment. The database
// must pass integrity_check, every acknowledged entry must be there byte for byte, and at most
// one more (the store in flight, whole or absent) may be.
TEST_CASE("caches: SIGKILL during a stream of writes loses at most the write in flight", "[app][cache][crash]") {
    const int rounds = kite::test::reduced_run() ? 3 : 8;
    std::mt19937 rng(20261203);
    const std::string s = ka::cache_scope("m", {{"t", 0}});
    for (int round = 0; round < rounds; ++round) {
        temp_dir dir;
        const auto file = dir / "crash.sqlite";
        const int target = std::uniform_int_distribution<int>(5, 120)(rng);
        const int last = kite::test::run_and_kill(
            [&](auto ack) {
                ka::exact_cache exact(file);
                ka::semantic_cache<letter_embedder> semantic(file, letter_embedder{});
                for (int i = 0;; ++i) {
                    exact.store("question " + std::to_string(i), s, response_for(i));
                    semantic.store("question " + std::to_string(i), s, response_for(i));
                    ack(i);
                }
            },
            target, std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
        INFO("round " << round << ": killed after " << last + 1 << " acknowledged stores");
        REQUIRE(last >= target);
        {
            ka::sql::database db(file);
            CHECK(db.integrity_check() == "ok");
        }
        ka::exact_cache exact(file);
        ka::semantic_cache<letter_embedder> semantic(file, letter_embedder{}, {{}, 0.999999});
        for (int i = 0; i <= last; ++i) {
            const auto h = exact.lookup("question " + std::to_string(i), s);
            REQUIRE(h);
            CHECK(h->response == response_for(i));
        }
        // The store in flight: whole or absent, in each table.
        const auto in_flight = exact.lookup("question " + std::to_string(last + 1), s);
        if (in_flight) CHECK(in_flight->response == response_for(last + 1));
        CHECK(exact.size() >= static_cast<std::size_t>(last + 1));
        CHECK(exact.size() <= static_cast<std::size_t>(last + 2));
        CHECK(semantic.size() >= static_cast<std::size_t>(last + 1));
        CHECK(semantic.size() <= static_cast<std::size_t>(last + 2));
        CHECK_FALSE(exact.lookup("question " + std::to_string(last + 2), s));
    }
}

TEST_CASE("same_polarity: numbers, negations and words of direction must not differ", "[app][cache]") {
    CHECK_FALSE(ka::same_polarity("Statins increase mortality.", "Statins decrease mortality."));
    CHECK_FALSE(ka::same_polarity("53% of deaths are due to X", "5% of deaths are due to X"));
    CHECK_FALSE(ka::same_polarity("Bone marrow cells don't contribute to Y", "Bone marrow cells contribute to Y"));
    CHECK_FALSE(ka::same_polarity("Basophils promote disease", "Basophils counteract disease"));
    CHECK_FALSE(ka::same_polarity("a drug without side effects", "a drug with side effects"));
    CHECK(ka::same_polarity("What is a KV cache?", "what is the KV cache"));
    CHECK(ka::same_polarity("Statins increase mortality.", "Do statins increase mortality?"));
    CHECK(ka::same_polarity("", ""));
}

TEST_CASE("semantic cache: the guard refuses a near neighbour of the other polarity", "[app][cache]") {
    temp_dir dir;
    const letter_embedder e;  // anagrams embed identically: cosine 1
    const std::string s = ka::cache_scope("m");
    ka::semantic_cache<letter_embedder> c(dir / "g.sqlite", e);
    c.store("listen not", s, "negative");
    CHECK_FALSE(c.lookup("silent ton", s));  // cosine 1, but "not" is on one side only
    CHECK(c.stats().guarded == 1);
    CHECK(c.lookup("tinsel not", s));        // same polarity: a hit
    ka::semantic_cache<letter_embedder> unguarded(dir / "g.sqlite", e, {{}, 0.95, false});
    CHECK(unguarded.lookup("silent ton", s));
}

TEST_CASE("semantic cache with all-MiniLM-L6-v2: paraphrases hit, other questions miss", "[app][cache][.minilm]") {
    KITE_NEED_MODEL(dir_model, "all-MiniLM-L6-v2", "fetch_minilm.py");
    const auto st = kite::model::sentence_encoder<>::load(dir_model);
    temp_dir dir;
    const std::string s = ka::cache_scope("m");
    ka::semantic_cache<const decltype(st)&> c(dir / "s.sqlite", st);
    c.store("What causes the seasons on Earth?", s, "The tilt of Earth's axis.");
    c.store("How do vaccines train the immune system?", s, "They show it a harmless antigen.");
    const auto h = c.lookup("What causes the Earth's seasons?", s);
    REQUIRE(h);
    CHECK(h->response == "The tilt of Earth's axis.");
    CHECK(h->similarity >= c.options().threshold);
    CHECK_FALSE(c.lookup("What causes earthquakes?", s));
    CHECK_FALSE(c.lookup("How long do vaccines take to develop?", s));
}
