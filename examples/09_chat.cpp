// kite-chat: an interactive chat with a GGUF instruct model, keeping its KV cache between turns.
//
//   kite-chat --model models/SmolLM2-135M-Instruct.Q4_1.gguf [--system TEXT] [--temperature T]
//             [--top-k K] [--top-p P] [--seed S] [--max-tokens N] [--threads N] [--int8-activations]
//
// Type a message and press Enter; the answer streams back. "/reset" forgets the conversation,
// "/quit" (or end of input) leaves. Lines can also be piped in: `printf 'Hi\n' | kite-chat ...`.
//
// Each turn renders the whole conversation with the model's chat template, but only the part the
// cache does not hold yet (the end of the last answer's turn and the new user message) is run
// through the model: the earlier turns are not recomputed. When the template rewrites earlier
// text (Llama 2 / 3 strip whitespace from messages) or the context is full, the conversation is
// re-encoded from its start (or from the last message), and the program says so.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "kite/core/parallel.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/generate.hpp"
#include "kite/text/chat_template.hpp"
#include "kite/text/utf8.hpp"

#include "cli.hpp"

namespace {

namespace km = kite::model;
namespace kt = kite::text;
using kite::index_t;

struct options {
    std::optional<std::string> system;
    km::generation_options gen;
    bool int8_activations = false;
};

/// The segments of `segs` after their first `bytes` bytes (a segment cut in two keeps its kind).
std::vector<kt::chat_segment> drop_bytes(const std::vector<kt::chat_segment>& segs, std::size_t bytes) {
    std::vector<kt::chat_segment> out;
    for (const auto& s : segs) {
        if (bytes >= s.text.size()) {
            bytes -= s.text.size();
            continue;
        }
        out.push_back({s.text.substr(bytes), s.is_template_text});
        bytes = 0;
    }
    return out;
}

std::string joined(const std::vector<kt::chat_segment>& segs) {
    std::string s;
    for (const auto& seg : segs) s += seg.text;
    return s;
}

template <class Model>
int chat(Model& model, const km::gguf_tokenizer& tok, const options& o) {
    const kt::chat_template& tpl = tok.chat_template();
    const index_t context = model.max_positions() > 0 ? model.max_positions() : 8192;
    auto cache = model.make_cache(context);  // reserved, touched only as it fills
    kite::kv::seq_id seq = *cache.add_sequence();

    std::vector<kt::chat_message> history;
    std::string held;                           // the rendered text whose tokens the cache holds
    std::vector<std::int32_t> pending;          // generated tokens not yet in the cache
    const auto reset = [&] {
        cache.free(seq);
        seq = *cache.add_sequence();
        history.clear();
        if (o.system) history.push_back({"system", *o.system});
        held.clear();
        pending.clear();
    };
    reset();

    const bool interactive = isatty(STDIN_FILENO) != 0;
    std::string line;
    for (;;) {
        if (interactive) std::cout << "> " << std::flush;
        if (!std::getline(std::cin, line) || line == "/quit") break;
        if (line == "/reset") {
            reset();
            std::cout << "(conversation reset)\n";
            continue;
        }
        if (line.empty()) continue;
        history.push_back({"user", line});

        // What the new turn adds to the cache: the rendered conversation after `held`.
        auto segs = tpl.render(history, /*add_generation_prompt=*/true);
        std::vector<std::int32_t> ids;
        if (joined(segs).starts_with(held)) {
            ids = pending;
            const auto tail = tok.encode_segments(drop_bytes(segs, held.size()));
            ids.insert(ids.end(), tail.begin(), tail.end());
        } else {
            std::cerr << "(the template rewrote earlier text: re-encoding the conversation)\n";
            cache.free(seq);
            seq = *cache.add_sequence();
            ids = tok.encode_segments(segs);
        }
        if (cache.length(seq) + ids.size() + 16 >= context) {
            std::cerr << "(the context of " << context << " tokens is full: starting over from this message)\n";
            const kt::chat_message user = history.back();
            reset();
            history.push_back(user);
            segs = tpl.render(history, true);
            ids = tok.encode_segments(segs);
            if (ids.size() + 16 >= context) {
                std::cerr << "(the message alone is " << ids.size() << " tokens: too long for the context)\n";
                reset();
                continue;
            }
        }

        kt::utf8::stream_decoder out;
        std::string reply;
        auto gen = o.gen;
        gen.max_new_tokens = std::min<index_t>(gen.max_new_tokens, context - cache.length(seq) - ids.size());
        const auto r = km::generate(model, cache, seq, ids, gen, [&](std::int32_t t) {
            const std::string piece = out.push(tok.token_bytes(t));
            reply += piece;
            std::cout << piece << std::flush;
        });
        const std::string rest = out.finish();
        reply += rest;
        std::cout << rest << "\n";
        std::fprintf(stderr, "(%zu tokens, %s; %.1f tokens/s; %zu of %zu context tokens used)\n", r.tokens.size(),
                     km::to_string(r.reason), r.decode_tokens_per_second(), cache.length(seq), context);

        // The cache now holds everything rendered so far plus the reply's tokens, except the last
        // one when generation stopped for its length (it was never run through the model).
        held = joined(segs) + reply;
        pending.clear();
        if (r.reason != km::stop_reason::stop_token && !r.tokens.empty()) pending.push_back(r.tokens.back());
        history.push_back({"assistant", reply});
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-chat", "An interactive chat with a GGUF instruct model (its own chat template).");
    auto& model = cli.option<std::filesystem::path>("--model", "FILE", "a GGUF instruct model").required();
    auto& system = cli.option<std::string>("--system", "TEXT", "system message (default: the template's)");
    auto& temperature = cli.option<float>("--temperature", "T", "0 = greedy", 0.7f).range(0.0f, 100.0f);
    auto& top_k = cli.option<index_t>("--top-k", "K", "keep the K most likely tokens (0 = all)", 40).range(0, index_t{1} << 40);
    auto& top_p = cli.option<float>("--top-p", "P", "nucleus sampling mass", 0.9f).range(0.0f, 1.0f);
    auto& seed = cli.option<std::uint64_t>("--seed", "S", "sampling seed (default: the time)");
    auto& max_tokens = cli.option<index_t>("--max-tokens", "N", "tokens per answer at most", 512).range(1, index_t{1} << 40);
    auto& threads = cli.option<int>("--threads", "N", "threads (0: every core)", 0).range(0, 4096);
    const bool& a8 = cli.flag("--int8-activations", "round activations to int8 per block of 32 (faster)");
    cli.epilog("Type /reset to forget the conversation, /quit to leave.");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        if (*threads > 0) kite::set_num_threads(*threads);
        options o;
        if (system.given()) o.system = *system;
        o.int8_activations = a8;
        o.gen.max_new_tokens = *max_tokens;
        o.gen.sampling = {.temperature = *temperature, .top_k = *top_k, .top_p = *top_p};
        o.gen.seed = seed.given() ? *seed : static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
        const km::gguf_file file(*model);
        const km::gguf_tokenizer tok(file);
        o.gen.stop_tokens = tok.end_of_generation_ids();
        (void)tok.chat_template();  // a clear error now when the file's template is not one kite renders
        return km::with_gguf_decoder(file, a8, [&](auto& decoder) { return chat(decoder, tok, o); });
    });
}
