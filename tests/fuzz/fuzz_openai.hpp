#pragma once
// fuzz_openai: kite-serve's request parsing (kite/serve/openai.hpp): the bytes as the body of
// /v1/chat/completions, /v1/completions and /v1/embeddings, parsed and validated into typed
// calls. An api_error (answered as HTTP 4xx) is expected; its error object must serialize, as
// the server's send_error does. A parsed chat is rendered by the chatml template, as the
// server renders it.

#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "kite/serve/openai.hpp"
#include "kite/text/chat_template.hpp"

namespace kite::fuzz {

namespace detail {
/// Runs f(); an api_error must turn into the JSON text the server sends.
template <class F>
void openai_guarded(F&& f) {
    guarded([&] {
        try {
            f();
        } catch (const serve::openai::api_error& e) {
            const std::string s = serve::openai::error_body(e).dump();
            (void)s.size();
        }
    });
}
}  // namespace detail

inline int fuzz_openai(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    namespace oa = serve::openai;
    detail::openai_guarded([&] {
        const oa::json body = oa::parse_body(as_text(data, size));
        detail::openai_guarded([&] {
            const oa::chat_call c = oa::parse_chat(body);
            const text::chat_template t(text::chat_family::chatml, "<s>", "</s>", std::string("You are helpful."));
            guarded([&] { (void)t.render_text(c.messages, true); });
        });
        detail::openai_guarded([&] { (void)oa::parse_completion(body); });
        detail::openai_guarded([&] { (void)oa::parse_embedding(body); });
    });
    return 0;
}

}  // namespace kite::fuzz
