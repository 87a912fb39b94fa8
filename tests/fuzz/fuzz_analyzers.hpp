#pragma once
// fuzz_analyzers: arbitrary bytes as text through the UTF-8 analyzers (kite/text/
// unicode_words.hpp, english.hpp, cjk_bigram.hpp) and kite/text/utf8.hpp. Besides crashes,
// two documented equalities are checked, and a difference aborts (a finding):
//   - unicode_words and cjk_bigram: the fast analyze() gives reference_terms();
//   - utf8::stream_decoder: the pushes of any split of the bytes, then finish(), give lossy().

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "kite/text/cjk_bigram.hpp"
#include "kite/text/english.hpp"
#include "kite/text/unicode_words.hpp"
#include "kite/text/utf8.hpp"

namespace kite::fuzz {

namespace detail {
[[noreturn]] inline void differ(const char* what, std::string_view input) {
    std::fprintf(stderr, "kite fuzz: %s differ on %zu bytes of input\n", what, input.size());
    std::abort();
}

template <class Analyzer>
void analyze_against_reference(const Analyzer& a, std::string_view s, const char* what) {
    std::vector<std::string> fast;
    bool fast_ok = true, ref_ok = true;
    std::vector<std::string> ref;
    try {
        a.analyze(s, [&](std::string_view t) { fast.emplace_back(t); });
    } catch (const kite::unicode_error&) {
        fast_ok = false;
    }
    try {
        ref = Analyzer::reference_terms(s);
    } catch (const kite::unicode_error&) {
        ref_ok = false;
    }
    if (fast_ok != ref_ok || (fast_ok && fast != ref)) differ(what, s);
}
}  // namespace detail

inline int fuzz_analyzers(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const std::string_view s = as_text(data, size);

    // The stream decoder: split the bytes into chunks of 1..8 bytes chosen by the bytes.
    text::utf8::stream_decoder dec;
    std::string streamed;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = std::min<std::size_t>(s.size() - i, 1 + (static_cast<unsigned char>(s[i]) % 8));
        streamed += dec.push(s.substr(i, n));
        i += n;
    }
    streamed += dec.finish();
    const std::string lossy = text::utf8::lossy(s);
    if (streamed != lossy) detail::differ("utf8::stream_decoder and utf8::lossy", s);
    if (text::utf8::find_invalid(lossy) != std::string_view::npos) detail::differ("utf8::lossy output and valid UTF-8", s);

    detail::analyze_against_reference(text::unicode_words{}, s, "unicode_words analyze and reference_terms");
    detail::analyze_against_reference(text::cjk_bigram{}, s, "cjk_bigram analyze and reference_terms");
    return guarded([&] {
        std::size_t n = 0;
        text::english{}.analyze(s, [&](std::string_view t) { n += t.size(); });
        (void)n;
    });
}

}  // namespace kite::fuzz
