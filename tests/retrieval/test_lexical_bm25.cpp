// BM25 on the pre-tokenized path (no utf8proc): golden scores from bm25s and rank_bm25, pruned
// top-k against exhaustive top-k on random and adversarial corpora, incremental add, remove,
// save/load and corrupt files.
#include <kite/core/checksum.hpp>
#include <kite/core/io.hpp>
#include <kite/retrieval/bm25.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kite_test.hpp"

namespace bm25 = kite::bm25;
using kite::scored_id;
using kite::retrieval::bm25_index;
using kite::text::pretokenized;
using ids = std::vector<std::uint32_t>;

namespace {

template <class V>
using index_t = bm25_index<V, pretokenized>;

using all_variants = std::tuple<bm25::robertson, bm25::lucene, bm25::atire, bm25::bm25l,
                                bm25::bm25plus, bm25::lucene_classic>;

template <class F>
void for_each_variant(F&& f) {
    std::apply([&](auto... v) { (f(v), ...); }, all_variants{});
}

template <class F>
void with_variant(const std::string& name, F&& f) {
    bool found = false;
    for_each_variant([&](auto v) {
        if (decltype(v)::name() == name) {
            f(v);
            found = true;
        }
    });
    REQUIRE(found);
}

std::vector<ids> zipf_corpus(std::mt19937_64& rng, std::size_t n_docs, std::uint32_t vocab,
                             std::size_t max_len, double s = 1.1) {
    std::vector<double> w(vocab);
    for (std::uint32_t r = 0; r < vocab; ++r) w[r] = 1.0 / std::pow(r + 1.0, s);
    std::discrete_distribution<std::uint32_t> term(w.begin(), w.end());
    std::uniform_int_distribution<std::size_t> len(0, max_len);
    std::vector<ids> docs(n_docs);
    for (auto& d : docs) {
        d.resize(len(rng));
        for (auto& t : d) t = term(rng);
    }
    return docs;
}

std::vector<std::span<const std::uint32_t>> spans(const std::vector<ids>& v) {
    return {v.begin(), v.end()};
}

bool same_bits(const std::vector<scored_id>& a, const std::vector<scored_id>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].id != b[i].id || std::memcmp(&a[i].score, &b[i].score, sizeof(float)) != 0) return false;
    return true;
}

/// search() == search_exhaustive() exactly; both agree with the double oracle (same ids except
/// where oracle scores tie within float precision; scores within 1e-5 relative).
template <class Index>
void check_query(const Index& ix, std::span<const std::uint32_t> q, std::size_t k,
                 typename Index::scratch& s) {
    const auto fast = ix.search_pruned(q, k, s);
    const auto exh = ix.search_exhaustive(q, k, s);
    INFO("k " << k << " query size " << q.size());
    REQUIRE(same_bits(fast, exh));
    REQUIRE(same_bits(ix.search(q, k, s), exh));
    const auto ref = ix.search_reference(q, k);
    REQUIRE(ref.size() == exh.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
        REQUIRE(exh[i].score == Approx(ref[i].score).epsilon(1e-5).margin(1e-6));
        if (exh[i].id != ref[i].id) {
            // Only a near-tie may reorder: the two docs' oracle scores are within float noise.
            REQUIRE(std::abs(exh[i].score - ref[i].score) <= 1e-5f * std::max(1.0f, ref[i].score));
        }
    }
}

}  // namespace

TEST_CASE("bm25 matches bm25s and rank_bm25 on the same tokens (all variants)", "[lexical][bm25]") {
    const auto j = nlohmann::json::parse(kite::io::read_text(kite::test::fixture("retrieval/lexical/bm25_scores.json")));
    const auto docs = j["docs"].get<std::vector<ids>>();
    const auto queries = j["queries"].get<std::vector<ids>>();
    std::size_t checked = 0;
    for (const auto& c : j["cases"]) {
        const std::string variant = c["variant"];
        const bm25::params p{c["k1"].get<double>(), c["b"].get<double>(), c["delta"].get<double>()};
        const auto want = c["scores"].get<std::vector<std::vector<double>>>();
        INFO(c["library"].get<std::string>() << " " << variant << " k1 " << p.k1 << " b " << p.b);
        with_variant(variant, [&](auto v) {
            index_t<decltype(v)> ix(p);
            ix.add_all(spans(docs));
            for (std::size_t qi = 0; qi < queries.size(); ++qi) {
                INFO("query " << qi);
                const auto got = ix.scores(queries[qi]);
                REQUIRE(got.size() == docs.size());
                // Measured 4.9e-10 (double scores against bm25s / rank_bm25, 2026-12-03).
                CHECK(kite::test::max_rel_diff(got, want[qi], 1.0) <= 5e-9);
                checked += docs.size();
                // The float paths: every matching document with its score.
                const auto all = ix.search_exhaustive(queries[qi], docs.size());
                REQUIRE(same_bits(all, ix.search_pruned(queries[qi], docs.size())));
                std::vector<double> found, expected;
                for (const auto& r : all) {
                    found.push_back(r.score);
                    expected.push_back(want[qi][static_cast<std::size_t>(r.id)]);
                }
                CHECK(kite::test::max_rel_diff(found, expected, 1.0) <= 1e-6);  // float scores: measured 1.7e-7
            }
        });
    }
    CHECK(checked > 10000);
}

TEST_CASE("every variant's score_shape equals its literal tf component", "[lexical][bm25]") {
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for_each_variant([&](auto v) {
        using V = decltype(v);
        for (int i = 0; i < 2000; ++i) {
            const bm25::params p{3 * u(rng), u(rng), 2 * u(rng)};
            const double tf = 1 + std::floor(20 * u(rng)), dl = std::floor(200 * u(rng)), avgdl = 1 + 100 * u(rng);
            const auto s = V::shape(p);
            const double lhs = V::tfc(tf, dl, avgdl, p) - V::tfc(0, dl, avgdl, p);
            const double rhs = s.w * tf / (tf + s.a + s.b_num * dl / avgdl);
            INFO(V::name() << " k1 " << p.k1 << " b " << p.b << " delta " << p.delta);
            REQUIRE(lhs == Approx(rhs).epsilon(1e-12).margin(1e-12));
            REQUIRE(V::tfc(0, dl, avgdl, p) == Approx(s.zero).epsilon(1e-12).margin(1e-12));
        }
    });
}

TEST_CASE("the seed's toy check: lucene_classic is the seed's formula", "[lexical][bm25]") {
    // The seed's BM25 (idf = ln(1 + (N - df + .5)/(df + .5)), tf (k1+1)/(tf + k1 nrm)) gave
    // [0.44713859, 0, 0.52354835] for the query '안녕' over three strings its subword tokenizer
    // split into 3, 3 and 2 pieces, '안녕' being the first piece of documents 0 and 2.
    const std::vector<ids> docs = {{0, 1, 2}, {3, 4, 5}, {0, 6}};
    index_t<bm25::lucene_classic> classic;
    classic.add_all(spans(docs));
    const auto s = classic.scores(ids{0});
    CHECK(s[0] == Approx(0.44713859).epsilon(1e-7));
    CHECK(s[1] == 0.0);
    CHECK(s[2] == Approx(0.52354835).epsilon(1e-7));
    // lucene (Lucene >= 8, bm25s) ranks the same with scores divided by k1 + 1.
    index_t<bm25::lucene> modern;
    modern.add_all(spans(docs));
    const auto m = modern.scores(ids{0});
    for (int d = 0; d < 3; ++d) CHECK(m[d] * 2.2 == Approx(s[d]).margin(1e-12));
}

TEST_CASE("pruned top-k equals exhaustive top-k on thousands of random queries", "[lexical][bm25]") {
    std::mt19937_64 rng(42);
    std::size_t queries_run = 0;
    for_each_variant([&](auto v) {
        using V = decltype(v);
        for (int corpus = 0; corpus < 2; ++corpus) {
            const bm25::params p = corpus == 0 ? bm25::params{} : bm25::params{2.0, 0.3, 1.0};
            const auto docs = zipf_corpus(rng, corpus == 0 ? 3000 : 700, corpus == 0 ? 600 : 60,
                                          corpus == 0 ? 60 : 300, corpus == 0 ? 1.1 : 0.6);
            index_t<V> ix(p);
            ix.add_all(spans(docs));
            typename index_t<V>::scratch s;
            std::uniform_int_distribution<std::uint32_t> term(0, corpus == 0 ? 620 : 70);
            for (int qi = 0; qi < 120; ++qi) {
                ids q(1 + rng() % (qi % 10 == 0 ? 40 : 8));
                for (auto& t : q) t = term(rng);
                if (qi % 7 == 0) q.push_back(q[0]);  // a repeated term
                INFO(V::name() << " corpus " << corpus << " query " << qi);
                for (std::size_t k : {std::size_t{1}, std::size_t{3}, std::size_t{10}, std::size_t{100}}) {
                    check_query(ix, q, k, s);
                    ++queries_run;
                }
            }
        }
    });
    CHECK(queries_run >= 5000);
}

TEST_CASE("pruning is exact on adversarial corpora: ties, equal lengths, one long list", "[lexical][bm25]") {
    std::mt19937_64 rng(5);
    // (a) Many identical documents: every score ties, so order is by id alone.
    std::vector<ids> same(1000, ids{1, 2, 2, 3});
    // (b) Every document the same length, terms from a tiny vocabulary (long lists, many ties).
    std::vector<ids> flat(2000);
    for (auto& d : flat) {
        d.resize(10);
        for (auto& t : d) t = static_cast<std::uint32_t>(rng() % 6);
    }
    // (c) One term in every document with tf varying, plus rare terms.
    std::vector<ids> skew(3000);
    for (std::size_t i = 0; i < skew.size(); ++i) {
        skew[i] = ids(1 + i % 5, 0);
        if (i % 97 == 0) skew[i].push_back(1 + static_cast<std::uint32_t>(i % 3));
        if (i % 500 == 0) skew[i].resize(400, 9);  // very long documents
    }
    for (const auto* docs : {&same, &flat, &skew}) {
        for_each_variant([&](auto v) {
            index_t<decltype(v)> ix;
            ix.add_all(spans(*docs));
            typename index_t<decltype(v)>::scratch s;
            for (int qi = 0; qi < 40; ++qi) {
                ids q(1 + rng() % 5);
                for (auto& t : q) t = static_cast<std::uint32_t>(rng() % 10);
                for (std::size_t k : {std::size_t{1}, std::size_t{7}, std::size_t{128}, std::size_t{129}, std::size_t{5000}})
                    check_query(ix, q, k, s);
            }
        });
    }
    index_t<bm25::lucene> ix;
    ix.add_all(spans(same));
    const auto top = ix.search(ids{2}, 5);
    REQUIRE(top.size() == 5);
    for (int i = 0; i < 5; ++i) CHECK(top[static_cast<std::size_t>(i)].id == i);  // ties: lower id first
}

TEST_CASE("incremental add equals bulk add; batches equal single queries", "[lexical][bm25]") {
    std::mt19937_64 rng(9);
    const auto docs = zipf_corpus(rng, 1500, 300, 50);
    index_t<bm25::lucene> bulk, inc;
    bulk.add_all(spans(docs));
    for (const auto& d : docs) inc.add(d);  // open tails, bounds with slack
    // bulk scores from stored impacts, inc computes g on the fly: the same bits either way.
    REQUIRE(bulk.index().impacts_valid());
    REQUIRE_FALSE(inc.index().impacts_valid());
    std::vector<ids> qs;
    for (int i = 0; i < 200; ++i) {
        ids q(1 + rng() % 6);
        for (auto& t : q) t = static_cast<std::uint32_t>(rng() % 320);
        qs.push_back(q);
    }
    typename index_t<bm25::lucene>::scratch s;
    for (const auto& q : qs) {
        REQUIRE(same_bits(bulk.search(q, 10), inc.search(q, 10)));
        check_query(inc, q, 10, s);
    }
    const auto qspans = spans(qs);
    const auto batch = bulk.search_batch(qspans, 10, 2);
    for (std::size_t i = 0; i < qs.size(); ++i) REQUIRE(same_bits(batch[i], bulk.search(qs[i], 10)));
    inc.optimize();
    REQUIRE(inc.index().impacts_valid());
    for (const auto& q : qs) REQUIRE(same_bits(bulk.search(q, 10), inc.search(q, 10)));
}

TEST_CASE("remove and compact equal an index built without the removed documents", "[lexical][bm25]") {
    std::mt19937_64 rng(13);
    const auto docs = zipf_corpus(rng, 1200, 200, 40);
    for_each_variant([&](auto v) {
        using V = decltype(v);
        index_t<V> ix;
        ix.add_all(spans(docs));
        std::vector<ids> kept;
        std::vector<kite::id_t> kept_id;  // id in ix of kept[i]
        for (std::size_t i = 0; i < docs.size(); ++i) {
            if (i % 3 == 1 || (i > 600 && i < 700)) {
                ix.remove(static_cast<kite::id_t>(i));
            } else {
                kept.push_back(docs[i]);
                kept_id.push_back(static_cast<kite::id_t>(i));
            }
        }
        index_t<V> fresh;
        fresh.add_all(spans(kept));
        REQUIRE(ix.size() == kept.size());
        typename index_t<V>::scratch s;
        for (int pass = 0; pass < 2; ++pass) {
            for (int qi = 0; qi < 60; ++qi) {
                ids q(1 + rng() % 6);
                for (auto& t : q) t = static_cast<std::uint32_t>(rng() % 210);
                const auto a = ix.scores(q), b = fresh.scores(q);
                for (std::size_t i = 0; i < kept.size(); ++i)
                    REQUIRE(a[static_cast<std::size_t>(kept_id[i])] == Approx(b[i]).epsilon(1e-12).margin(1e-12));
                // Term ids (and so the float summation order) differ between the two indexes.
                const auto ra = ix.search(q, 10, s), rb = fresh.search(q, 10);
                REQUIRE(ra.size() == rb.size());
                for (std::size_t i = 0; i < ra.size(); ++i) {
                    REQUIRE(ra[i].score == Approx(rb[i].score).epsilon(1e-6));
                    if (ra[i].id != kept_id[static_cast<std::size_t>(rb[i].id)])
                        REQUIRE(std::abs(ra[i].score - rb[i].score) <= 1e-6f * rb[i].score);
                }
                check_query(ix, q, 10, s);
            }
            ix.compact();  // second pass: postings of removed documents physically gone
        }
        KITE_REQUIRE_THROWS_CONTAINING(ix.remove(1), kite::not_found_error, "already removed");
        KITE_REQUIRE_THROWS_CONTAINING(ix.remove(999999), kite::not_found_error, "does not exist");
        KITE_REQUIRE_THROWS_CONTAINING(ix.remove(-1), kite::not_found_error, "does not exist");
    });
}

TEST_CASE("save and load round-trip; foreign, truncated and corrupt files are format errors", "[lexical][bm25]") {
    std::mt19937_64 rng(17);
    const auto docs = zipf_corpus(rng, 900, 250, 60);
    index_t<bm25::bm25l> ix(bm25::params{1.4, 0.6, 0.7});
    ix.add_all(spans(docs));
    ix.remove(5);
    ix.add(ids{1, 2, 3, 3});  // an open tail
    kite::test::temp_dir dir;
    const auto path = dir / "index.kbm25";
    ix.save(path);
    const auto back = index_t<bm25::bm25l>::load(path);
    CHECK(back.size() == ix.size());
    CHECK(back.params().k1 == 1.4);
    CHECK(back.params().delta == 0.7);
    for (int qi = 0; qi < 100; ++qi) {
        ids q(1 + rng() % 5);
        for (auto& t : q) t = static_cast<std::uint32_t>(rng() % 260);
        REQUIRE(same_bits(back.search(q, 10), ix.search(q, 10)));
    }
    // Loading into another variant is a configuration error.
    KITE_REQUIRE_THROWS_CONTAINING(index_t<bm25::lucene>::load(path), kite::config_error, "bm25l");

    const std::string good = kite::io::read_text(path);
    const auto write = [&](const std::string& bytes) {
        const auto p = dir / "bad.kbm25";
        std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        return p;
    };
    const auto reseal = [](std::string bytes) {  // a valid checksum over edited content
        const auto crc = kite::crc32c(std::as_bytes(std::span<const char>(bytes).subspan(24)));
        std::memcpy(bytes.data() + 12, &crc, 4);
        return bytes;
    };
    using I = index_t<bm25::bm25l>;
    KITE_REQUIRE_THROWS_CONTAINING(I::load(write("not an index at all, just text")), kite::format_error, "not a kite");
    KITE_REQUIRE_THROWS_CONTAINING(I::load(write(good.substr(0, 10))), kite::format_error, "truncated");
    KITE_REQUIRE_THROWS_CONTAINING(I::load(write(good.substr(0, good.size() - 3))), kite::format_error, "payload size");
    std::string flipped = good;
    flipped[good.size() / 2] ^= 0x10;
    KITE_REQUIRE_THROWS_CONTAINING(I::load(write(flipped)), kite::format_error, "checksum");
    std::string version = good;
    version[8] = 9;
    KITE_REQUIRE_THROWS_CONTAINING(I::load(write(version)), kite::format_error, "version 9");
    // Corruption behind a valid checksum is caught by validation, never UB: flip bytes all over
    // the payload (lengths, counts, bit widths, packed data) and reseal.
    std::size_t rejected = 0;
    for (std::size_t pos = 24; pos < good.size(); pos += 1 + good.size() / 400) {
        std::string bad = good;
        bad[pos] = static_cast<char>(bad[pos] ^ 0xA5);
        try {
            const auto x = I::load(write(reseal(bad)));
            (void)x.search(ids{1, 2}, 3);  // a load that passes validation must still search
        } catch (const kite::format_error&) {
            ++rejected;
        } catch (const kite::config_error&) {
            ++rejected;
        }
    }
    CHECK(rejected > 100);
    KITE_REQUIRE_THROWS_CONTAINING(I::load(dir / "missing.kbm25"), kite::io_error, "cannot open");
}

TEST_CASE("bad arguments raise kite errors naming the value", "[lexical][bm25]") {
    KITE_REQUIRE_THROWS_CONTAINING(index_t<bm25::lucene>(bm25::params{-1, 0.75, 0.5}), kite::invalid_argument, "k1 = -1");
    KITE_REQUIRE_THROWS_CONTAINING(index_t<bm25::lucene>(bm25::params{1.2, 1.5, 0.5}), kite::invalid_argument, "b = 1.5");
    KITE_REQUIRE_THROWS_CONTAINING(index_t<bm25::bm25l>(bm25::params{1.2, 0.5, NAN}), kite::invalid_argument, "delta");
    index_t<bm25::lucene> ix;
    ix.add(ids{1, 2});
    KITE_REQUIRE_THROWS_CONTAINING(ix.search(ids{1}, 0), kite::invalid_argument, "k = 0");
    // Empty index, empty query, unknown terms: empty results, not errors.
    index_t<bm25::lucene> empty;
    CHECK(empty.search(ids{1}, 3).empty());
    CHECK(ix.search(ids{}, 3).empty());
    CHECK(ix.search(ids{77}, 3).empty());
    CHECK(ix.scores(ids{77}) == std::vector<double>{0.0});
}

TEST_CASE("a k far beyond the corpus returns every match and reserves nothing for it", "[lexical][bm25][limits]") {
    index_t<bm25::lucene> ix;
    ix.add(ids{1, 2});
    ix.add(ids{2, 3});
    ix.add(ids{4});
    // kite-eval --depth 1e12 once reserved k entries before capping by the corpus (bad_alloc).
    for (const std::size_t k : {std::size_t{1000000000000}, std::numeric_limits<std::size_t>::max()}) {
        const auto all = ix.search(ids{2}, k);
        CHECK(all.size() == 2);
        CHECK(same_bits(all, ix.search_exhaustive(ids{2}, 2)));
        CHECK(same_bits(ix.search_pruned(ids{2}, k), all));
        CHECK(ix.search_reference(ids{2}, k).size() == 2);
        const std::vector<ids> qs{ids{2}, ids{4}};
        CHECK(ix.search_batch(spans(qs), k, 2)[1].size() == 1);
    }
}
