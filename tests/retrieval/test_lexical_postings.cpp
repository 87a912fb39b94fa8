// Posting-list building blocks: bit packing, posting lists and cursors, vocabulary.
#include <kite/retrieval/detail/bitpack.hpp>
#include <kite/retrieval/detail/postings.hpp>
#include <kite/retrieval/detail/serialize.hpp>
#include <kite/retrieval/inverted_index.hpp>
#include <kite/retrieval/vocabulary.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kite_test.hpp"

namespace kd = kite::retrieval::detail;

TEST_CASE("bitpack round-trips every width against the bit-at-a-time reader", "[lexical]") {
    std::mt19937_64 rng(7);
    for (std::uint32_t bits = 0; bits <= 32; ++bits) {
        for (std::uint32_t n : {1u, 7u, 8u, 9u, 64u, 127u, 128u}) {
            std::vector<std::uint32_t> in(n);
            const std::uint64_t lim = bits == 32 ? 0xFFFFFFFFull : (1ull << bits) - 1;
            for (auto& v : in) v = static_cast<std::uint32_t>(rng() & lim);
            if (n > 2) in[n / 2] = static_cast<std::uint32_t>(lim);  // the largest value fits
            std::vector<std::uint8_t> buf(kd::packed_bytes(n, bits) + 8, 0);
            kd::pack(in.data(), n, bits, buf.data());
            std::vector<std::uint32_t> out(n, 0xDEADBEEF);
            kd::unpack(buf.data(), n, bits, out.data());
            INFO("bits " << bits << " n " << n);
            REQUIRE(out == in);
            for (std::uint32_t i = 0; i < n; ++i) REQUIRE(kd::unpack_one_reference(buf.data(), i, bits) == in[i]);
        }
    }
    CHECK(kd::bit_width(0) == 0);
    CHECK(kd::bit_width(1) == 1);
    CHECK(kd::bit_width(255) == 8);
    CHECK(kd::bit_width(0xFFFFFFFFu) == 32);
}

TEST_CASE("posting lists pack, reopen and skip like a plain vector", "[lexical]") {
    std::mt19937_64 rng(11);
    for (int trial = 0; trial < 40; ++trial) {
        // Postings with gaps from 1 to huge, tfs up to large values, appended with seals between.
        std::vector<std::uint32_t> docs, tfs;
        std::uint32_t d = static_cast<std::uint32_t>(rng() % 5);
        const std::size_t n = 1 + rng() % 700;
        for (std::size_t i = 0; i < n; ++i) {
            docs.push_back(d);
            tfs.push_back(1 + static_cast<std::uint32_t>(trial % 5 == 0 ? rng() % 100000 : rng() % 4));
            d += 1 + static_cast<std::uint32_t>(trial % 7 == 0 ? rng() % 100000 : rng() % 20);
        }
        kd::posting_list pl;
        for (std::size_t i = 0; i < n; ++i) {
            pl.append(docs[i], tfs[i], static_cast<float>(tfs[i]));
            if (rng() % 50 == 0) pl.seal();  // partial blocks that later appends reopen
        }
        if (trial % 2) pl.seal();
        REQUIRE(pl.size() == n);
        REQUIRE(pl.last_doc() == docs.back());
        std::vector<std::uint32_t> got_d, got_t;
        pl.for_each([&](std::uint32_t x, std::uint32_t y) {
            got_d.push_back(x);
            got_t.push_back(y);
        });
        REQUIRE(got_d == docs);
        REQUIRE(got_t == tfs);
        REQUIRE(pl.max_g() == static_cast<float>(*std::max_element(tfs.begin(), tfs.end())));
        // Cursor: next() visits everything; seek() lands on the first doc >= target.
        kd::posting_cursor c;
        c.reset(pl);
        for (std::size_t i = 0; i < n; ++i, c.next()) {
            REQUIRE(c.doc() == docs[i]);
            REQUIRE(c.tf() == tfs[i]);
        }
        REQUIRE(c.doc() == kd::no_doc);
        c.reset(pl);
        std::uint32_t target = 0;
        while (true) {
            target += static_cast<std::uint32_t>(rng() % 3000);
            c.seek(target);
            const auto it = std::lower_bound(docs.begin(), docs.end(), target);
            if (it == docs.end()) {
                REQUIRE(c.doc() == kd::no_doc);
                break;
            }
            REQUIRE(c.doc() == *it);
            REQUIRE(c.tf() == tfs[static_cast<std::size_t>(it - docs.begin())]);
            // The block bound covers the posting found.
            REQUIRE(c.block_max_g(target) >= static_cast<float>(c.tf()));
        }
    }
}

TEST_CASE("vocabulary numbers terms densely and round-trips its arena", "[lexical]") {
    kite::retrieval::vocabulary v;
    std::vector<std::string> words;
    for (int i = 0; i < 5000; ++i) {
        std::string w = "w";
        w += std::to_string(i * 7919 % 10007);
        words.push_back(w);
    }
    words.push_back("");
    words.push_back(std::string("\0x", 2));
    for (std::size_t i = 0; i < words.size(); ++i) REQUIRE(v.insert(words[i]) == i);
    for (std::size_t i = 0; i < words.size(); ++i) {
        REQUIRE(v.insert(words[i]) == i);
        REQUIRE(v.find(words[i]) == i);
        REQUIRE(v.term(static_cast<kite::retrieval::term_id>(i)) == words[i]);
    }
    CHECK(v.find("missing") == kite::retrieval::vocabulary::npos);
    auto w = kite::retrieval::vocabulary::from_arena(
        v.arena(), std::vector<std::uint64_t>(v.offsets().begin(), v.offsets().end()), "test");
    REQUIRE(w.size() == v.size());
    for (std::size_t i = 0; i < words.size(); ++i) REQUIRE(w.find(words[i]) == i);
    // A repeated term or offsets that do not cover the arena are format errors.
    KITE_REQUIRE_THROWS_CONTAINING(kite::retrieval::vocabulary::from_arena("abab", {0, 2, 4}, "f"),
                                   kite::format_error, "repeats");
    KITE_REQUIRE_THROWS_CONTAINING(kite::retrieval::vocabulary::from_arena("abc", {0, 2}, "f"),
                                   kite::format_error, "do not span");
    KITE_REQUIRE_THROWS_CONTAINING(kite::retrieval::vocabulary::from_arena("abc", {0, 3, 2, 3}, "f"),
                                   kite::format_error, "decrease");
}

TEST_CASE("gaps_to_docs equals the running sum, any length, wrapping from no_doc", "[lexical]") {
    std::mt19937_64 rng(17);
    for (std::uint32_t n : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 100u, 128u}) {
        for (std::uint32_t prev : {kd::no_doc, 0u, 12345u, 0x7FFFFFF0u}) {
            std::vector<std::uint32_t> gaps(n);
            for (auto& g : gaps) g = static_cast<std::uint32_t>(rng() % (n % 2 ? 3 : 100000));
            std::vector<std::uint32_t> want(n), got = gaps;
            std::uint32_t p = prev;
            for (std::uint32_t i = 0; i < n; ++i) p = want[i] = p + gaps[i] + 1;  // unsigned wrap
            kd::gaps_to_docs(got.data(), n, prev);
            INFO("n " << n << " prev " << prev);
            REQUIRE(got == want);
        }
    }
}

TEST_CASE("impacts hold g(tf, dl) of every posting, block by block", "[lexical]") {
    std::mt19937_64 rng(23);
    kite::retrieval::inverted_index ix({1.2f * 0.25f, 1.2f * 0.75f});
    std::vector<std::vector<kite::retrieval::term_id>> docs(700);
    for (auto& d : docs) {
        d.resize(1 + rng() % 30);
        for (auto& t : d) t = static_cast<kite::retrieval::term_id>(rng() % 40);
    }
    for (const auto& d : docs) ix.add_unrefreshed(d);
    REQUIRE_FALSE(ix.impacts_valid());
    ix.optimize();
    REQUIRE(ix.impacts_valid());
    const float coef = kite::retrieval::inverted_index::length_coefficient(ix.shape().b_num, ix.avg_length());
    for (kite::retrieval::term_id t = 0; t < ix.num_terms(); ++t) {
        const auto& pl = ix.postings(t);
        REQUIRE(pl.impacts().size() == pl.size());
        std::size_t i = 0;
        pl.for_each([&](std::uint32_t doc, std::uint32_t tf) {
            const float want = kd::posting_g(tf, ix.doc_length(doc), ix.shape().a, coef);
            REQUIRE(std::memcmp(&pl.impacts()[i], &want, sizeof(float)) == 0);
            ++i;
        });
        // The cursor reads the impact of the posting it stands on.
        kd::posting_cursor c;
        c.reset(pl);
        for (std::size_t j = 0; j < pl.size(); ++j, c.next()) REQUIRE(c.impact() == pl.impacts()[j]);
    }
    ix.add(docs[0]);
    CHECK_FALSE(ix.impacts_valid());
    ix.optimize();
    CHECK(ix.impacts_valid());
    ix.remove(3);
    CHECK_FALSE(ix.impacts_valid());
    ix.compact();
    CHECK(ix.impacts_valid());
}

TEST_CASE("a posting file with a partial block before the last is a format error", "[lexical]") {
    // Two one-term documents whose single list is cut into two blocks of one posting each:
    // valid in every other respect, but impacts (and the writer) assume full blocks.
    kd::byte_sink out;
    out.put<std::uint64_t>(2);
    out.put<std::uint32_t>(1);
    out.put<std::uint32_t>(1);
    out.put<std::uint8_t>(0);
    out.put<std::uint8_t>(0);
    out.put<std::uint64_t>(1);  // lists
    out.put<std::uint32_t>(2);  // postings
    out.put<std::uint32_t>(2);  // blocks
    for (std::uint32_t last : {0u, 1u}) {
        out.put<std::uint32_t>(last);
        out.put<std::uint8_t>(0);  // count - 1
        out.put<std::uint8_t>(0);  // doc bits
        out.put<std::uint8_t>(0);  // tf bits
        out.put<std::uint8_t>(0);
    }
    out.put<std::uint64_t>(0);  // payload bytes
    kite::io::byte_reader r(out.bytes(), "two-blocks.bin");
    KITE_REQUIRE_THROWS_CONTAINING(kite::retrieval::inverted_index::deserialize(r, {}), kite::format_error,
                                   "every block but the last");
}
