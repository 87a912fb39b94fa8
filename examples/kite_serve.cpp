// kite-serve: an OpenAI-compatible HTTP server over kite's serving engine (continuous batching,
// prefix caching, optional prompt-lookup speculation) for a GGUF chat model, with an optional
// MiniLM sentence encoder for /v1/embeddings.
//
//   kite-serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf --port 8080
//   curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json'
//        -d '{"model": "smollm2", "messages": [{"role": "user", "content": "Hi!"}]}'
//
// Endpoints, errors and limits: kite/serve/openai_server.hpp. One JSON line per request on
// stderr (no prompt text unless --log-prompts). SIGTERM or SIGINT: new requests get 503 while
// the ones in flight finish (at most --drain-timeout seconds), then it exits 0.
// --port 0 picks a free port; the "listening on" line names it.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "kite/core/parallel.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/serve.hpp"
#include "kite/serve/openai_server.hpp"

#include "cli.hpp"

namespace {

namespace km = kite::model;
namespace ks = kite::serve;
namespace fs = std::filesystem;
using kite::index_t;

struct settings {
    fs::path model, embedding_model;
    std::string host, alias, api_key;
    int port = 8080;
    index_t parallel = 8, ctx = 0, kv_tokens = 0, queue = 64, chunk = 256;
    bool prefix_cache = true, speculative = false, int8 = false, log_prompts = false, quiet = false;
    bool kv_f32 = false;  // K/V stored as float32 instead of float16
    std::size_t max_body = 1 << 20;
    int timeout_s = 10, drain_s = 10;
};

// The signals that stop the server, blocked in every thread and taken by one waiting thread.
sigset_t stop_signals() {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    return s;
}

template <class Model>
int serve(const settings& a, const Model& model, const km::gguf_tokenizer& tok, ks::embedding_backend emb,
          double load_s) {
    const index_t max_pos = model.max_positions();
    const index_t ctx = a.ctx ? std::min(a.ctx, max_pos ? max_pos : a.ctx) : std::min<index_t>(4096, max_pos ? max_pos : 4096);
    const index_t kv = a.kv_tokens ? std::max(a.kv_tokens, ctx) : std::max(ctx, a.parallel * std::min<index_t>(ctx, 2048));
    using engine_t = ks::engine<Model, ks::continuous_batching, ks::prompt_lookup>;
    engine_t eng(model,
                 {.kv_tokens = kv,
                  .max_queue = a.queue,
                  .prefix_caching = a.prefix_cache,
                  .stop_tokens = tok.end_of_generation_ids(),
                  .detokenize = [&tok](std::span<const std::int32_t> ids) { return tok.decode(ids, true); },
                  .max_context = ctx},
                 {.max_running = a.parallel, .chunk = a.chunk});
    eng.start();
    ks::server_options so;
    so.model_id = a.alias.empty() ? a.model.stem().string() : a.alias;
    so.api_key = a.api_key;
    so.max_body_bytes = a.max_body;
    so.read_timeout = so.write_timeout = std::chrono::seconds(a.timeout_s);
    so.speculative = a.speculative;
    so.log = a.quiet ? nullptr : &std::cerr;
    so.log_prompts = a.log_prompts;
    ks::openai_server<engine_t, km::gguf_tokenizer> srv(eng, tok, so, std::move(emb));
    const int port = srv.bind(a.host, a.port);

    // SIGTERM / SIGINT: drain, then close (run() returns).
    const sigset_t sigs = stop_signals();
    std::thread waiter([&] {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (sig == 0) return;  // woken by main after run() returned on its own
        std::fprintf(stderr, "kite-serve: signal %d: draining %d request(s) for at most %d s\n", sig,
                     static_cast<int>(srv.in_flight()), a.drain_s);
        srv.stop(std::chrono::seconds(a.drain_s));
    });
    std::fprintf(stderr,
                 "kite-serve: listening on http://%s:%d (model %s, loaded in %.2f s; %d threads, %zu parallel, context %zu, "
                 "KV pool %zu tokens, prefix cache %s, speculation %s)\n",
                 a.host.c_str(), port, so.model_id.c_str(), load_s, kite::max_threads(), static_cast<std::size_t>(a.parallel),
                 static_cast<std::size_t>(ctx), static_cast<std::size_t>(kv), a.prefix_cache ? "on" : "off",
                 a.speculative ? "ngram" : "off");
    srv.run();
    pthread_kill(waiter.native_handle(), SIGTERM);  // no-op when the waiter already returned
    waiter.join();
    eng.shutdown(false);
    const ks::engine_stats st = eng.stats();
    std::fprintf(stderr, "kite-serve: stopped (%llu requests finished, %llu tokens generated)\n",
                 static_cast<unsigned long long>(st.finished), static_cast<unsigned long long>(st.generated_tokens));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-serve", "an OpenAI-compatible HTTP server for a GGUF chat model");
    auto& model = cli.option<fs::path>("--model", "FILE", "GGUF chat model").required();
    auto& emb_dir = cli.option<fs::path>("--embedding-model", "DIR", "sentence-transformers folder for /v1/embeddings (e.g. models/all-MiniLM-L6-v2)");
    auto& host = cli.option<std::string>("--host", "ADDR", "address to listen on", "127.0.0.1");
    auto& port = cli.option<int>("--port", "N", "port (0: any free port)", 8080).range(0, 65535);
    auto& threads = cli.option<int>("--threads", "N", "compute threads (0: all cores)", 0).range(0, 1024);
    auto& parallel = cli.option<std::size_t>("--parallel", "N", "sequences generated together", 8).range(1, 1024);
    auto& ctx = cli.option<std::size_t>("--ctx", "N", "tokens one request may hold, prompt included (0: min(4096, the model's))", 0).range(0, 1 << 20);
    auto& kv = cli.option<std::size_t>("--kv-tokens", "N", "KV pool in tokens (0: parallel x min(ctx, 2048))", 0).range(0, 1 << 24);
    auto& queue = cli.option<std::size_t>("--queue", "N", "requests waiting at most (more: 429)", 64).range(1, 1 << 16);
    auto& api_key = cli.option<std::string>("--api-key", "KEY", "require 'Authorization: Bearer KEY' (default: $KITE_API_KEY)");
    auto& prefix = cli.option<std::string>("--prefix-cache", "on|off", "automatic prefix caching", "on").choices({"on", "off"});
    auto& spec = cli.option<std::string>("--speculative", "ngram|off", "prompt-lookup speculative decoding", "off").choices({"ngram", "off"});
    auto& int8 = cli.flag("--int8-activations", "int8 activations, as llama.cpp (faster; logits within about 2 of the float path)");
    auto& kv_type = cli.option<std::string>("--kv-type", "f16|f32", "K/V cache storage (f16: half the memory and reads, as llama.cpp's default)", "f16").choices({"f16", "f32"});
    auto& alias = cli.option<std::string>("--alias", "NAME", "model id in /v1/models and responses (default: the file name)");
    auto& max_body = cli.option<std::size_t>("--max-body", "BYTES", "largest request body (more: 413)", 1 << 20).range(1024, 1 << 30);
    auto& timeout = cli.option<int>("--timeout", "S", "read / write timeout per connection", 10).range(1, 3600);
    auto& drain = cli.option<int>("--drain-timeout", "S", "on SIGTERM, how long requests in flight may finish", 10).range(0, 3600);
    auto& log_prompts = cli.flag("--log-prompts", "include prompt text in the request log");
    auto& quiet = cli.flag("--quiet", "no request log");
    return kite::cli::run(cli, argc, argv, [&] {
        // Block the stop signals before any thread starts, so that only the waiter takes them.
        const sigset_t sigs = stop_signals();
        pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
        signal(SIGPIPE, SIG_IGN);
        if (*threads > 0) kite::set_num_threads(*threads);
        settings a;
        a.model = *model, a.embedding_model = *emb_dir, a.host = *host, a.port = *port, a.alias = *alias;
        a.api_key = api_key.given() ? *api_key : (std::getenv("KITE_API_KEY") ? std::getenv("KITE_API_KEY") : "");
        a.parallel = *parallel, a.ctx = *ctx, a.kv_tokens = *kv, a.queue = *queue;
        a.prefix_cache = *prefix == "on", a.speculative = *spec == "ngram", a.int8 = int8;
        a.kv_f32 = *kv_type == "f32";
        a.max_body = *max_body, a.timeout_s = *timeout, a.drain_s = *drain, a.log_prompts = log_prompts, a.quiet = quiet;
        if (!fs::exists(a.model)) throw kite::io_error("--model: " + a.model.string() + " does not exist");

        const auto t0 = std::chrono::steady_clock::now();
        ks::embedding_backend emb;
        std::shared_ptr<km::sentence_encoder<>> st;
        if (!a.embedding_model.empty()) {
            st = std::make_shared<km::sentence_encoder<>>(km::sentence_encoder<>::load(a.embedding_model));
            emb.id = a.embedding_model.filename().string();
            if (emb.id.empty()) emb.id = a.embedding_model.parent_path().filename().string();
            emb.dim = st->dim();
            emb.encode = [st](std::span<const std::string> texts) {
                const kite::matrix<float> m = st->encode(texts);
                std::vector<std::vector<float>> out(m.rows());
                for (index_t i = 0; i < m.rows(); ++i) out[i].assign(m.row(i).begin(), m.row(i).end());
                return out;
            };
            emb.count_tokens = [st](std::string_view s) { return static_cast<index_t>(st->tokenize(s).size()); };
        }
        const km::gguf_file file(a.model);
        const km::gguf_tokenizer tok(file);
        const auto go = [&](auto& m) {
            const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            return serve(a, m, tok, emb, load_s);
        };
        if (a.kv_f32) return km::with_gguf_decoder<kite::kv::paged<16, float>, kite::attn::invariant>(file, a.int8, go);
        return km::with_gguf_decoder<kite::kv::paged<16, kite::fp16>, kite::attn::invariant>(file, a.int8, go);
    });
}
