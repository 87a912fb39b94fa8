// kite/app/prompt.hpp and kite/app/rag.hpp: prompt assembly within a token budget (sentence
// boundaries, rank order, exact final count), citation parsing, the rag<> flow with a scripted
// generator over BM25 on the shipped notes corpus (validation at every stage, retries, refusals,
// caching, logging), and end to end with SmolLM2 on the serving engine: greedy answers stable,
// citations among the passages the generator received.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <thread>
#include <string>
#include <vector>

#include "kite/app/rag.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/datasets.hpp"
#include "kite/retrieval/dense.hpp"
#include "kite/retrieval/pipeline.hpp"
#include "kite/retrieval/vector_io.hpp"
#include "kite/serve.hpp"
#include "kite/text.hpp"
#include "kite_test.hpp"

namespace ka = kite::app;
namespace kr = kite::retrieval;
using kite::test::temp_dir;

namespace {

// One token per run of non-space bytes and per run of spaces; token ids are not needed.
struct word_tokenizer {
    std::vector<std::int32_t> encode(std::string_view s, bool = true) const {
        std::vector<std::int32_t> ids;
        for (std::size_t i = 0; i < s.size();) {
            const bool sp = std::isspace(static_cast<unsigned char>(s[i])) != 0;
            std::size_t j = i;
            while (j < s.size() && (std::isspace(static_cast<unsigned char>(s[j])) != 0) == sp) ++j;
            ids.push_back(static_cast<std::int32_t>(j - i));
            i = j;
        }
        return ids;
    }
    std::vector<std::int32_t> apply_chat_template(std::span<const kite::text::chat_message> m, bool) const {
        std::string all;
        for (const auto& x : m) all += "<" + x.role + "> " + x.content + " </>";
        all += " <assistant>";
        return encode(all);
    }
    std::string_view token_bytes(std::int32_t) const { return "?"; }
};

// A generator that answers from a script: f(user message, attempt) -> text.
struct scripted_generator {
    word_tokenizer tok;
    std::function<std::string(const std::vector<std::int32_t>&, const ka::generate_params&)> script;
    int calls = 0;
    ka::generation generate(std::span<const std::int32_t> prompt, const ka::generate_params& p, const ka::text_callback& f) {
        ++calls;
        ka::generation g;
        g.text = script(std::vector<std::int32_t>(prompt.begin(), prompt.end()), p);
        if (f) f(g.text);
        g.prompt_tokens = prompt.size();
        g.generated_tokens = tok.encode(g.text).size();
        g.finish = "stop";
        return g;
    }
    const word_tokenizer& tokenizer() const { return tok; }
    std::string model_id() const { return "scripted"; }
};

ka::passage psg(std::string id, std::string text) { return {std::move(id), "T", std::move(text), 1.0f}; }

std::filesystem::path notes_dir() { return std::filesystem::path(KITE_FIXTURES_DIR).parent_path().parent_path() / "examples/data/notes"; }

using bm25_t = kr::bm25_index<kite::bm25::lucene, kite::text::english>;

struct notes_fixture {
    kr::data::dataset ds = kr::data::load_beir(notes_dir(), "test");
    bm25_t bm25;
    notes_fixture() {
        std::vector<std::string> texts;
        for (const auto& d : ds.corpus) texts.push_back(d.full_text());
        bm25.add_all(texts);
    }
};

}  // namespace

TEST_CASE("sentence_ends: after . ! ? and CJK stops followed by space, and at line breaks", "[app][prompt]") {
    const std::string t = "One. Two! Three? e.g.x 3.5 four\nFive\xE3\x80\x82Six";
    const auto e = ka::sentence_ends(t);
    std::vector<std::string> parts;
    std::size_t at = 0;
    for (auto x : e) {
        parts.push_back(t.substr(at, x - at));
        at = x;
    }
    CHECK(parts == std::vector<std::string>{"One. ", "Two! ", "Three? ", "e.g.x 3.5 four\n", "Five\xE3\x80\x82", "Six"});
    CHECK(ka::sentence_ends("") == std::vector<std::size_t>{0});
}

TEST_CASE("prompt_builder: passages in rank order within the budget, cut at sentence boundaries", "[app][prompt]") {
    const word_tokenizer tok;
    const std::vector<ka::passage> ps = {
        psg("a", "Alpha one two three. Alpha four five six. Alpha seven eight nine."),
        psg("b", "Beta one two three. Beta four five six. Beta seven eight nine."),
        psg("c", "Gamma one two."),
    };
    ka::prompt_options o;
    o.system = "sys";
    o.user_template = "{context}Q: {question}";
    o.passage_template = "[{n}] {text}\n";
    o.min_passage_tokens = 4;
    const std::string q = "what is beta?";
    const std::size_t base = ka::prompt_builder<word_tokenizer>(tok, o).render(q, "").size();
    // Everything fits.
    o.max_prompt_tokens = 1000;
    auto all = ka::prompt_builder<word_tokenizer>(tok, o).build(q, ps);
    CHECK(all.citation_ids == std::vector<std::string>{"a", "b", "c"});
    CHECK(all.dropped == 0);
    CHECK(all.user_message.find("[2] Beta one") != std::string::npos);
    const std::size_t full = all.tokens.size();
    // Budget sweep: never over, always a prefix of the ranking, text cut only between sentences.
    for (std::size_t budget = base; budget <= full + 2; ++budget) {
        o.max_prompt_tokens = budget;
        const auto p = ka::prompt_builder<word_tokenizer>(tok, o).build(q, ps);
        INFO("budget " << budget);
        CHECK(p.tokens.size() <= budget);
        for (std::size_t k = 0; k < p.used.size(); ++k) CHECK(p.used[k] == k);
        CHECK(p.dropped == ps.size() - p.used.size());
        for (std::size_t k = 0; k < p.used.size(); ++k) {
            const std::string& text = ps[k].text;
            const std::string head = "[" + std::to_string(k + 1) + "] ";
            const auto at = p.user_message.find(head);
            REQUIRE(at != std::string::npos);
            const auto end = p.user_message.find('\n', at);
            const std::string body = p.user_message.substr(at + head.size(), end - at - head.size());
            CHECK(text.compare(0, body.size(), body) == 0);                // a prefix of the passage
            CHECK((body.size() == text.size() || body.back() == ' '));     // ends at a sentence end
            CHECK(p.truncated[k] == (body.size() != text.size()));
        }
    }
    // The smallest budget that takes any passage: the first sentence of the first passage.
    for (std::size_t budget = base;; ++budget) {
        o.max_prompt_tokens = budget;
        const auto p = ka::prompt_builder<word_tokenizer>(tok, o).build(q, ps);
        if (p.used.empty()) continue;
        CHECK(p.citation_ids == std::vector<std::string>{"a"});
        CHECK(p.truncated == std::vector<bool>{true});
        CHECK(p.user_message.find("[1] Alpha one two three. \n") != std::string::npos);
        CHECK(p.user_message.find("four") == std::string::npos);
        break;
    }
    // The question alone does not fit.
    o.max_prompt_tokens = base - 1;
    KITE_REQUIRE_THROWS_CONTAINING(ka::prompt_builder<word_tokenizer>(tok, o).build(q, ps), kite::invalid_argument,
                                   "expected at most max_prompt_tokens");
    o.user_template = "no placeholders";
    KITE_REQUIRE_THROWS_CONTAINING(ka::prompt_builder<word_tokenizer>(tok, o), kite::invalid_argument, "{context}");
}

TEST_CASE("cited_numbers: [n] and [n, m] markers within range, first appearance, no repeats", "[app][rag]") {
    CHECK(ka::cited_numbers("See [2] and [1, 3]; again [2].", 3) == std::vector<std::size_t>{2, 1, 3});
    CHECK(ka::cited_numbers("[0] [4] [x] [1 [2,] [", 3).empty());
    CHECK(ka::cited_numbers("[3,1]", 3) == std::vector<std::size_t>{3, 1});
}

TEST_CASE("rag: retrieval, prompt, generation, citations, cache and log with a scripted generator", "[app][rag]") {
    notes_fixture nf;
    temp_dir dir;
    scripted_generator gen;
    gen.script = [](const std::vector<std::int32_t>&, const ka::generate_params&) {
        return std::string("The cache grows with tokens and layers [1], see also [2] and [9].");
    };
    ka::exact_cache cache(dir / "app.sqlite");
    ka::exchange_log log(dir / "app.sqlite");
    ka::rag<const bm25_t&, scripted_generator&, ka::exact_cache&, ka::no_validation, ka::exchange_log&> app(
        nf.bm25, gen, nf.ds.corpus, cache, {}, log, {.retrieve_k = 5, .scope_tag = "notes"});
    std::string streamed;
    const auto a = app.ask("why does the attention cache use so much memory with long prompts", [&](std::string_view s) { streamed += s; });
    CHECK(a.answer == streamed);
    CHECK(a.cache == ka::cache_outcome::miss);
    REQUIRE(a.retrieved.size() == 5);
    REQUIRE(a.context_ids.size() == 5);
    CHECK(a.context_ids[0] == a.retrieved[0].doc_id);
    // [9] is outside the five passages and ignored.
    CHECK(a.citations == std::vector<std::string>{a.context_ids[0], a.context_ids[1]});
    CHECK(std::find(a.context_ids.begin(), a.context_ids.end(), std::string("kv-cache-size")) != a.context_ids.end());
    CHECK(a.finish == "stop");
    CHECK(a.attempts == 1);
    CHECK(a.timings.total >= a.timings.retrieval + a.timings.prompt);
    const auto j = ka::to_json(a);
    for (const char* k : {"retrieval", "prompt", "ttft", "generation", "total"}) CHECK(j["timings_ms"].contains(k));
    CHECK(j["cache"] == "miss");

    // The same question (other spacing): an exact hit, byte for byte, without generating.
    const auto b = app.ask("  why does the attention cache use so  much memory\nwith long prompts ");
    CHECK(b.cache == ka::cache_outcome::exact);
    CHECK(b.answer == a.answer);
    CHECK(b.citations == a.citations);
    CHECK(b.context_ids == a.context_ids);
    CHECK(gen.calls == 1);
    // Another retrieve_k is another scope: a miss.
    ka::rag<const bm25_t&, scripted_generator&, ka::exact_cache&> app3(nf.bm25, gen, nf.ds.corpus, cache, {}, {},
                                                                       {.retrieve_k = 3, .scope_tag = "notes"});
    CHECK(app3.ask("why does the attention cache use so much memory with long prompts").cache == ka::cache_outcome::miss);
    CHECK(gen.calls == 2);

    log.close();
    ka::log_reader reader(dir / "app.sqlite");
    const auto recs = reader.recent(10);
    REQUIRE(recs.size() == 2);
    CHECK(reader.summary().cache_outcomes.at("exact") == 1);
    for (const auto& r : recs) {
        CHECK(r.model == "scripted");
        CHECK(r.timings_ms.contains("total"));
        if (r.cache == "miss") {
            CHECK(r.request_id == a.request_id);
            CHECK(r.retrieved.size() == 5);
            CHECK(r.prompt.find("why does the attention cache") != std::string::npos);
        }
    }
}

TEST_CASE("rag: validation at each stage — masked question, dropped passage, retried and refused output", "[app][rag]") {
    notes_fixture nf;
    scripted_generator gen;
    std::vector<float> temps;
    gen.script = [&](const std::vector<std::int32_t>&, const ka::generate_params& p) {
        temps.push_back(p.sampling.temperature);
        return temps.size() == 1 ? std::string("BADWORD first try [1]") : std::string("A clean answer [1]");
    };
    using checks_t = ka::validator<ka::pii_mask, ka::block_list>;
    ka::block_list_options bo;
    bo.on_fail = ka::action::retry;
    bo.stages = static_cast<unsigned>(ka::stage::output);
    checks_t checks(ka::pii_mask{}, ka::block_list::words({"badword"}, bo));
    ka::rag<const bm25_t&, scripted_generator&, ka::no_cache, const checks_t&> app(nf.bm25, gen, nf.ds.corpus, {}, checks);
    const auto a = app.ask("my mail is jane.doe@example.com: how does paged attention work?");
    CHECK(a.question.find("jane.doe") == std::string::npos);
    CHECK(a.question.find("[EMAIL]") != std::string::npos);
    CHECK(a.answer == "A clean answer [1]");
    CHECK(a.attempts == 2);
    CHECK(temps == std::vector<float>{0.0f, 0.7f});
    REQUIRE(a.validation.size() == 2);
    CHECK(a.validation[0].first == ka::stage::question);
    CHECK(a.validation[1].first == ka::stage::output);
    CHECK(a.validation[1].second.verdict == ka::action::retry);

    // Every answer blocked: after max_retries the answer is refused.
    gen.script = [](const std::vector<std::int32_t>&, const ka::generate_params&) { return std::string("badword"); };
    const auto r = app.ask("how does paged attention work?");
    CHECK(r.refused);
    CHECK(r.answer == app.options().refusal);
    CHECK(r.attempts == 2);
}

TEST_CASE("rag: a failing generator is logged with its error and the exception reaches the caller", "[app][rag]") {
    notes_fixture nf;
    temp_dir dir;
    scripted_generator gen;
    gen.script = [](const std::vector<std::int32_t>&, const ka::generate_params&) -> std::string {
        throw kite::error("engine_generator: the engine failed the request: out of memory");
    };
    ka::exchange_log log(dir / "log.sqlite");
    ka::rag<const bm25_t&, scripted_generator&, ka::no_cache, ka::no_validation, ka::exchange_log&> app(
        nf.bm25, gen, nf.ds.corpus, {}, {}, log);
    KITE_REQUIRE_THROWS_CONTAINING(app.ask("what is BM25"), kite::error, "out of memory");
    log.close();
    const auto recs = ka::log_reader(dir / "log.sqlite").recent(5);
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].error.find("out of memory") != std::string::npos);
    CHECK(recs[0].question == "what is BM25");
    CHECK_FALSE(recs[0].retrieved.empty());
}

TEST_CASE("rag end to end: SmolLM2 on the engine over the notes corpus, hybrid retrieval", "[app][rag][.smollm2]") {
    KITE_NEED_MODEL(gguf_path, "SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.py");
    KITE_NEED_MODEL(minilm_path, "all-MiniLM-L6-v2", "fetch_minilm.py");
    namespace km = kite::model;
    namespace ks = kite::serve;
    notes_fixture nf;
    using encoder_t = km::sentence_encoder<>;
    const encoder_t enc = encoder_t::load(minilm_path);
    kr::flat_index<kite::metric::cosine> vectors(enc.dim());
    vectors.add(kr::read_npy<float>(notes_dir() / "corpus_emb.npy").view());
    using dense_t = kr::dense_retriever<kite::metric::cosine, const encoder_t&>;
    const dense_t dense(vectors, enc);
    using hybrid_t = kr::pipeline<const bm25_t&, const dense_t&, kite::fusion::rrf<60>>;
    const hybrid_t hybrid(nf.bm25, dense);

    const km::gguf_file file(gguf_path);
    const km::gguf_tokenizer tok(file);
    std::vector<std::string> questions;
    for (const auto& q : nf.ds.queries) questions.push_back(q.text);
    if (kite::test::reduced_run()) questions.resize(2);
    km::with_gguf_decoder<kite::kv::paged<16>, kite::attn::invariant>(file, false, [&](auto& m) {
        using model_t = std::remove_cvref_t<decltype(m)>;
        ks::engine<model_t, ks::continuous_batching> eng(m, {.kv_tokens = 8192});
        eng.start();
        ka::engine_generator gen(eng, tok, "smollm2");
        ka::rag_options ro;
        ro.retrieve_k = 4;
        ro.prompt.max_prompt_tokens = 512;
        ro.generation.max_tokens = kite::test::reduced_run() ? 16 : 40;
        ka::rag<const hybrid_t&, decltype(gen)&> app(hybrid, gen, nf.ds.corpus, {}, {}, {}, ro);
        std::vector<ka::rag_answer> first;
        for (const auto& q : questions) {
            std::string streamed;
            first.push_back(app.ask(q, [&](std::string_view s) { streamed += s; }));
            const auto& a = first.back();
            INFO(q << " -> " << a.answer);
            CHECK(a.answer == streamed);
            CHECK_FALSE(a.answer.empty());
            CHECK(a.prompt_tokens <= 512);
            CHECK_FALSE(a.context_ids.empty());
            for (const auto& c : a.citations)
                CHECK(std::find(a.context_ids.begin(), a.context_ids.end(), c) != a.context_ids.end());
            for (std::size_t i = 0; i < a.context_ids.size(); ++i) CHECK(a.context_ids[i] == a.retrieved[i].doc_id);
            CHECK(a.timings.ttft > 0);
            CHECK(a.timings.generation >= a.timings.ttft);
            WARN("Q: " << q << "\nA: " << a.answer << "\ncited " << a.citations.size() << " of " << a.context_ids.size());
        }
        // Greedy answers are stable: asked again concurrently (batched by the engine), each is
        // the same text with the same citations.
        std::vector<ka::rag_answer> again(questions.size());
        std::vector<std::thread> ts;
        for (std::size_t i = 0; i < questions.size(); ++i) ts.emplace_back([&, i] { again[i] = app.ask(questions[i]); });
        for (auto& t : ts) t.join();
        for (std::size_t i = 0; i < questions.size(); ++i) {
            CHECK(again[i].answer == first[i].answer);
            CHECK(again[i].citations == first[i].citations);
            CHECK(again[i].context_ids == first[i].context_ids);
        }
        eng.shutdown();
        // The same pipeline on the decoder alone (kite::model::generate): the same greedy answer.
        ka::decoder_generator dgen(m, tok, "smollm2");
        ka::rag<const hybrid_t&, decltype(dgen)&> alone(hybrid, dgen, nf.ds.corpus, {}, {}, {}, ro);
        const auto d = alone.ask(questions[0]);
        CHECK(d.answer == first[0].answer);
        CHECK(d.context_ids == first[0].context_ids);
        return 0;
    });
}
