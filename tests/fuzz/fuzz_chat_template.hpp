#pragma once
// fuzz_chat_template: the chat template recognizer and renderer (kite/text/chat_template.hpp).
// The input is parts separated by kite::fuzz::part_separator: the first is a Jinja template
// (recognized, or refused with a kite::config_error), the others are message contents whose
// roles cycle through system, user, assistant, user, ... (a part starting with "@r:" names
// its own role up to the next ':'). The messages are rendered by each family and by the
// recognized template; render() and render_text() must agree (render's segments concatenated
// are render_text(), as documented), a difference aborts.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "kite/text/chat_template.hpp"

namespace kite::fuzz {

namespace detail {
inline void render_both(const text::chat_template& t, const std::vector<text::chat_message>& chat, bool gen) {
    guarded([&] {
        const auto segs = t.render(chat, gen);
        std::string joined;
        for (const auto& s : segs) joined += s.text;
        if (joined != t.render_text(chat, gen)) {
            std::fprintf(stderr, "kite fuzz: chat_template render and render_text differ\n");
            std::abort();
        }
    });
}
}  // namespace detail

inline int fuzz_chat_template(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto parts = split_parts(as_text(data, size), part_separator);
    const std::string_view jinja = parts[0];
    static constexpr const char* roles[] = {"system", "user", "assistant", "user"};
    std::vector<text::chat_message> chat;
    for (std::size_t i = 1; i < parts.size(); ++i) {
        std::string_view p = parts[i];
        std::string role = roles[(i - 1) % 4];
        if (p.substr(0, 3) == "@r:") {
            const std::size_t e = p.find(':', 3);
            if (e != std::string_view::npos) {
                role = std::string(p.substr(3, e - 3));
                p.remove_prefix(e + 1);
            }
        }
        chat.push_back({std::move(role), std::string(p)});
    }
    guarded([&] { (void)text::parse_chat_family(jinja); });
    (void)text::try_recognize_chat_template(jinja);
    guarded([&] {
        const auto t = text::chat_template::from_jinja(jinja, "<s>", "</s>");
        detail::render_both(t, chat, true);
        detail::render_both(t, chat, false);
    });
    for (const auto f : {text::chat_family::chatml, text::chat_family::llama2, text::chat_family::llama3}) {
        guarded([&] {
            const text::chat_template t(f, "<s>", "</s>", std::string("You are a helpful assistant."));
            detail::render_both(t, chat, true);
            detail::render_both(t, chat, false);
        });
    }
    return 0;
}

}  // namespace kite::fuzz
