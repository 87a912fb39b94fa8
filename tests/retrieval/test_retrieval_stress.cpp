// Many threads at once on the retrieval indexes and the sentence encoder, under the locking their
// headers document (const members from many threads; add / remove need exclusion, here a
// std::shared_mutex): readers never see a torn index (every answer equals the slow path's answer
// on the same snapshot), writers lose nothing (the final index equals one built serially from the
// same sequence of changes, byte for byte), and nothing deadlocks. Run under ThreadSanitizer by
// the tsan preset (label threads).
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite/text/pretokenized.hpp"
#include "kite_test.hpp"

namespace {

using kite::index_t;
namespace kr = kite::retrieval;
using bm25 = kr::bm25_index<kite::bm25::lucene, kite::text::pretokenized>;

// Documents of 3..40 token ids from a Zipf-like vocabulary of 500 (so terms repeat and postings
// span several blocks).
std::vector<std::uint32_t> random_doc(std::mt19937_64& rng) {
    std::vector<std::uint32_t> d(3 + rng() % 38);
    for (auto& t : d) {
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        t = static_cast<std::uint32_t>(500.0 * u * u * u);
    }
    return d;
}

std::string file_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One change to an index, in the order the writers made them (recorded under the write lock).
struct change {
    bool remove = false;
    std::vector<std::uint32_t> doc;
    kite::id_t id = 0;
};

}  // namespace

TEST_CASE("bm25: readers search while writers add and remove under a shared_mutex", "[retrieval][threads]") {
    const bool reduced = kite::test::reduced_run();
    const int writers = 2, readers = 4, adds_per_writer = reduced ? 100 : 300, searches_per_reader = reduced ? 100 : 400;
    bm25 index;
    std::shared_mutex mu;
    std::vector<change> log;
    {
        std::mt19937_64 rng(1);
        for (int i = 0; i < 200; ++i) log.push_back({false, random_doc(rng), 0});
        std::vector<std::vector<std::uint32_t>> first;
        for (const auto& c : log) first.push_back(c.doc);
        std::vector<std::span<const std::uint32_t>> spans(first.begin(), first.end());
        index.add_all(spans);
    }
    std::atomic<long> searches{0}, mismatches{0}, bad{0};
    std::vector<std::thread> pool;
    for (int w = 0; w < writers; ++w)
        pool.emplace_back([&, w] {
            std::mt19937_64 rng(100 + w);
            for (int i = 0; i < adds_per_writer; ++i) {
                auto doc = random_doc(rng);
                std::unique_lock lk(mu);
                if (i % 7 == 3) {
                    // remove a live document chosen at random
                    const auto id = static_cast<kite::id_t>(rng() % index.doc_count());
                    bool live = true;
                    for (const auto& c : log) live = live && !(c.remove && c.id == id);
                    if (live) {
                        index.remove(id);
                        log.push_back({true, {}, id});
                    }
                } else {
                    const auto id = index.add(doc);
                    log.push_back({false, std::move(doc), id});
                }
            }
        });
    for (int r = 0; r < readers; ++r)
        pool.emplace_back([&, r] {
            std::mt19937_64 rng(200 + r);
            bm25::scratch s;
            for (int i = 0; i < searches_per_reader; ++i) {
                std::vector<std::uint32_t> q(1 + rng() % 4);
                for (auto& t : q) t = static_cast<std::uint32_t>(rng() % 120);
                const std::size_t k = 1 + rng() % 12;
                std::shared_lock lk(mu);
                const auto fast = index.search(q, k, s);
                const auto pruned = index.search_pruned(q, k);
                const auto slow = index.search_exhaustive(q, k);
                const auto n = index.doc_count();
                lk.unlock();
                std::this_thread::yield();  // glibc's rwlock prefers readers: let a writer in
                ++searches;
                if (fast.size() != slow.size() || pruned.size() != slow.size()) {
                    ++mismatches;
                    continue;
                }
                for (std::size_t i = 0; i < slow.size(); ++i) {
                    if (fast[i].id != slow[i].id || fast[i].score != slow[i].score || pruned[i].id != slow[i].id ||
                        pruned[i].score != slow[i].score)
                        ++mismatches;
                    if (slow[i].id < 0 || static_cast<std::uint64_t>(slow[i].id) >= n) ++bad;
                    if (i > 0 && slow[i].score > slow[i - 1].score) ++bad;
                }
            }
        });
    for (auto& t : pool) t.join();
    INFO(searches.load() << " searches");
    CHECK(searches.load() > 0);
    CHECK(mismatches.load() == 0);
    CHECK(bad.load() == 0);

    // The same changes made serially give the same index, byte for byte.
    bm25 serial;
    {
        std::vector<std::vector<std::uint32_t>> first;
        for (std::size_t i = 0; i < 200; ++i) first.push_back(log[i].doc);
        std::vector<std::span<const std::uint32_t>> spans(first.begin(), first.end());
        serial.add_all(spans);
    }
    for (std::size_t i = 200; i < log.size(); ++i) {
        if (log[i].remove)
            serial.remove(log[i].id);
        else
            REQUIRE(serial.add(log[i].doc) == log[i].id);
    }
    kite::test::temp_dir dir;
    index.save(dir.path() / "threads.bm25");
    serial.save(dir.path() / "serial.bm25");
    CHECK(file_bytes(dir.path() / "threads.bm25") == file_bytes(dir.path() / "serial.bm25"));
}

TEST_CASE("flat_index: readers search with every kernel while writers add under a shared_mutex",
          "[retrieval][flat][threads]") {
    const bool reduced = kite::test::reduced_run();
    const index_t d = 24;
    const int writers = 2, readers = 4, chunks = reduced ? 10 : 30, searches_per_reader = reduced ? 40 : 150;
    kr::flat_index<kite::metric::l2> index(d);
    std::shared_mutex mu;
    std::vector<std::vector<float>> added;  // in the order they went in
    {
        std::mt19937_64 rng(299);
        std::normal_distribution<float> nd;
        std::vector<float> x(static_cast<std::size_t>(d) * 100);
        for (auto& v : x) v = nd(rng);
        index.add(x);
        added.push_back(std::move(x));
    }
    std::atomic<long> searches{0}, mismatches{0};
    std::vector<std::thread> pool;
    for (int w = 0; w < writers; ++w)
        pool.emplace_back([&, w] {
            std::mt19937_64 rng(300 + w);
            std::normal_distribution<float> nd;
            for (int c = 0; c < chunks; ++c) {
                std::vector<float> x(static_cast<std::size_t>(d) * (1 + rng() % 50));
                for (auto& v : x) v = nd(rng);
                std::unique_lock lk(mu);
                index.add(x);
                added.push_back(std::move(x));
            }
        });
    constexpr kr::flat_kernel kernels[] = {kr::flat_kernel::gemm, kr::flat_kernel::automatic};
    for (int r = 0; r < readers; ++r)
        pool.emplace_back([&, r] {
            std::mt19937_64 rng(400 + r);
            std::normal_distribution<float> nd;
            for (int i = 0; i < searches_per_reader; ++i) {
                const index_t nq = 1 + rng() % 9;
                std::vector<float> q(static_cast<std::size_t>(nq) * d);
                for (auto& v : q) v = nd(rng);
                const index_t k = 1 + rng() % 20;
                std::shared_lock lk(mu);
                const auto slow = index.search(q, k, {1, kr::flat_kernel::scan});
                const auto fast = index.search(q, k, {1 + r % 2, kernels[r % 2]});
                lk.unlock();
                std::this_thread::yield();
                ++searches;
                if (fast.labels.flat().size() != slow.labels.flat().size()) {
                    ++mismatches;
                    continue;
                }
                for (std::size_t i = 0; i < slow.labels.flat().size(); ++i)
                    if (fast.labels.flat()[i] != slow.labels.flat()[i] || fast.distances.flat()[i] != slow.distances.flat()[i])
                        ++mismatches;
            }
        });
    for (auto& t : pool) t.join();
    INFO(searches.load() << " searches");
    CHECK(searches.load() > 0);
    CHECK(mismatches.load() == 0);
    // Nothing lost: the index holds every chunk, in the order the writers added them.
    kr::flat_index<kite::metric::l2> serial(d);
    for (const auto& x : added) serial.add(x);
    REQUIRE(serial.size() == index.size());
    std::vector<float> q(d, 0.25f);
    const auto a = index.search(q, index.size(), {1, kr::flat_kernel::scan});
    const auto b = serial.search(q, serial.size(), {1, kr::flat_kernel::scan});
    CHECK(std::ranges::equal(a.labels.flat(), b.labels.flat()));
    CHECK(std::ranges::equal(a.distances.flat(), b.distances.flat()));
}

TEST_CASE("sentence_encoder: many threads encode at once and get what one thread gets", "[model][encoder][threads]") {
    namespace km = kite::model;
    std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    const char* const words[] = {"the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "and",
                                 "then", "slept", "##s", "##ed", ".", ",", "!", "?", "red", "blue"};
    index_t n = 5;
    for (const char* w : words) vocab += std::string(w) + "\n", ++n;
    for (; n < 99; ++n) vocab += "w" + std::to_string(n) + "\n";
    const km::sentence_encoder<> enc(kite::text::wordpiece_tokenizer::from_vocab_text(vocab),
                                     km::bert_encoder<>(km::read_bert(kite::test::fixture("model/bert_tiny"))),
                                     {.batch_size = 3});
    std::vector<std::string> texts;
    std::mt19937_64 rng(5);
    for (int i = 0; i < 24; ++i) {
        std::string t;
        for (std::size_t w = 0, len = 1 + rng() % 12; w < len; ++w) t += std::string(words[rng() % 21]) + " ";
        texts.push_back(t);
    }
    const kite::matrix<float> want = enc.encode(texts);
    std::atomic<long> mismatches{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 6; ++t)
        pool.emplace_back([&, t] {
            for (int rep = 0; rep < 4; ++rep) {
                // Different slices and batch shapes per thread.
                const std::size_t from = static_cast<std::size_t>((t * 5 + rep) % 20);
                std::vector<std::string> part(texts.begin() + static_cast<std::ptrdiff_t>(from), texts.end());
                const kite::matrix<float> got = enc.encode(part);
                for (index_t i = 0; i < got.rows(); ++i)
                    for (index_t j = 0; j < got.cols(); ++j)
                        if (got(i, j) != want(from + i, j)) ++mismatches;
            }
        });
    for (auto& th : pool) th.join();
    CHECK(mismatches.load() == 0);
}
