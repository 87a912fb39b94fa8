// Posting-list building blocks: bit packing, posting lists and cursors, vocabulary.
#include <kite/retrieval/detail/bitpack.hpp>
#include <kite/retrieval/detail/postings.hpp>
#include <kite/retrieval/vocabulary.hpp>

#include <algorithm>
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
