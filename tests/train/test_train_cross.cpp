// The cross-encoder: text pairs with token types (bert_encoder, the double reference and
// train::bert_model agree), the classifier head's forward and backward (finite differences for
// every tensor, the head's and token type 1 included), binary cross-entropy, cross_trainer,
// save_cross_encoder / cross_encoder::load, longest-first pair truncation, and the reranker in a
// retrieval pipeline.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/io.hpp"
#include "kite/model/cross_encoder.hpp"
#include "kite/model/encoder_reference.hpp"
#include "kite/model/formats/bert_loader.hpp"
#include "kite/retrieval/fusion.hpp"
#include "kite/retrieval/pipeline.hpp"
#include "kite/train.hpp"
#include "autograd_check.hpp"
#include "kite_test.hpp"

namespace {

using kite::index_t;
namespace km = kite::model;
namespace tr = kite::train;

using kite::test::tiny;

const km::classifier_head& tiny_head() {
    static const km::classifier_head h = km::new_classifier_head(kite::test::fixture("model/bert_tiny"), 32, 7);
    return h;
}

// [CLS] a [SEP] b [SEP] of random words, and where b starts.
km::pair_tokens random_pair(std::mt19937_64& rng, index_t na, index_t nb) {
    km::pair_tokens p;
    p.ids.push_back(2);
    for (index_t i = 0; i < na; ++i) p.ids.push_back(static_cast<std::int32_t>(5 + rng() % 94));
    p.ids.push_back(3);
    p.second = p.ids.size();
    for (index_t i = 0; i < nb; ++i) p.ids.push_back(static_cast<std::int32_t>(5 + rng() % 94));
    p.ids.push_back(3);
    return p;
}

// The head on a double [CLS] state, written out.
double head_reference(const km::classifier_head& h, std::span<const double> cls) {
    double z = h.bias;
    for (index_t i = 0; i < h.hidden(); ++i) {
        double a = h.pooler_bias[i];
        for (index_t j = 0; j < h.hidden(); ++j) a += static_cast<double>(h.pooler(i, j)) * cls[j];
        z += static_cast<double>(h.weight[i]) * std::tanh(a);
    }
    return z;
}

}  // namespace

TEST_CASE("cross-encoder forward: train::bert_model, bert_encoder with token types and the reference agree", "[train][cross]") {
    const tr::bert_model<double> m(tiny(), &tiny_head());
    REQUIRE(m.has_head());
    CHECK(m.tensors().size() == 5 + 12 * 2 + 4);
    CHECK(m.tensors().back().name == "classifier.bias");
    const km::bert_encoder<> enc(tiny());
    std::mt19937_64 rng(3);
    for (const auto& [na, nb] : std::vector<std::pair<index_t, index_t>>{{1, 1}, {4, 9}, {12, 3}, {0, 20}}) {
        const auto p = random_pair(rng, na, nb);
        INFO(na << " + " << nb << " words");
        const auto ref = km::reference::bert_states(tiny(), p.ids, p.second);
        const double z_ref = head_reference(tiny_head(), std::span<const double>(ref.data(), 32));
        tr::bert_model<double>::tape t;
        const double z = m.logit(p.ids, t, p.second);
        CHECK(std::abs(z - z_ref) < 1e-12);
        // Token type 1 matters: the same ids as one segment give other states.
        const auto one = km::reference::bert_states(tiny(), p.ids);
        CHECK(std::abs(one[0] - ref[0]) > 1e-6);
        // The inference encoder (float) on a batch mixing pairs and a single text.
        km::token_batch batch;
        batch.add(p.ids);
        batch.add(p.ids, p.second);
        km::encoder_workspace ws;
        enc.forward(batch, ws, 1);
        kite::test::running_max worst_pair, worst_single;
        for (index_t i = 0; i < p.ids.size(); ++i)
            for (index_t j = 0; j < 32; ++j) {
                worst_single.add(std::abs(ws.x(i, j) - one[i * 32 + j]));
                worst_pair.add(std::abs(ws.x(batch.offset(1) + i, j) - ref[i * 32 + j]));
            }
        CHECK(worst_single.value() < 5e-6);  // measured 1.2e-6
        CHECK(worst_pair.value() < 5e-6);
        const float zf = tiny_head()(std::span<const float>(ws.x.row(batch.offset(1)).data(), 32));
        CHECK(std::abs(zf - z_ref) < 2e-8);  // measured 1.1e-9 (logits near 0.02)
    }
    // A model with one token type cannot read a pair.
    auto single = km::read_bert(kite::test::fixture("model/bert_tiny"));
    single.token_type_embeddings = kite::matrix<float>(1, 32);
    const km::bert_encoder<> enc1(single);
    km::token_batch pair;
    pair.add(std::vector<std::int32_t>{2, 7, 3, 8, 3}, 3);
    km::encoder_workspace ws;
    KITE_REQUIRE_THROWS_CONTAINING(enc1.forward(pair, ws), kite::invalid_argument,
                                   "sequence 0 is a text pair but the model has 1 token type");
    KITE_REQUIRE_THROWS_CONTAINING(tr::bert_model<float>(single, &tiny_head()), kite::invalid_argument,
                                   "a cross-encoder needs 2");
    const tr::bert_model<float> plain(tiny());
    tr::bert_model<float>::tape t;
    KITE_REQUIRE_THROWS_CONTAINING((void)plain.logit(pair.ids(), t, 3), kite::invalid_argument, "no classifier head");
}

TEST_CASE("cross-encoder backward equals finite differences for parameters of every tensor", "[train][cross]") {
    tr::bert_model<double> m(tiny(), &tiny_head());
    std::mt19937_64 rng(4);
    const auto p = random_pair(rng, 4, 6);
    const double dz = 0.7;
    const auto loss = [&] {
        tr::bert_model<double>::tape t;
        return dz * m.logit(p.ids, t, p.second);
    };
    tr::bert_model<double>::tape t;
    (void)m.logit(p.ids, t, p.second);
    std::vector<double> g(m.parameters().size(), 0.0);
    m.backward(t, std::vector<double>{dz}, g);
    kite::test::running_max worst;
    index_t checked = 0, nonzero = 0;
    for (const auto& info : m.tensors()) {
        for (int k = 0; k < 6; ++k) {
            index_t row = static_cast<index_t>(rng() % info.rows);
            if (info.name.find("word_embeddings") != std::string::npos) row = static_cast<index_t>(p.ids[rng() % p.ids.size()]);
            if (info.name.find("position_embeddings") != std::string::npos) row = static_cast<index_t>(rng() % p.ids.size());
            if (info.name.find("token_type") != std::string::npos) row = k % 2;  // both segments
            const std::size_t at = info.offset + static_cast<std::size_t>(row) * info.cols + rng() % info.cols;
            const double num = kite::test::central_difference(m.parameters()[at], loss);
            INFO(info.name);
            worst.add(kite::test::relative_error(g[at], num, 1.0));
            ++checked;
            nonzero += g[at] != 0.0;
        }
    }
    INFO(checked << " parameters, " << nonzero << " with a nonzero gradient");
    CHECK(worst.value() < 2e-9);
    CHECK(nonzero > checked / 2);
    // Both token type rows get a gradient; the output size is checked.
    const auto& type = m.tensors()[2];
    CHECK(g[type.offset] != 0.0);
    CHECK(g[type.offset + type.cols] != 0.0);
    KITE_REQUIRE_THROWS_CONTAINING(m.backward(t, std::vector<double>(32, 0.0), g), kite::shape_error,
                                   "32 output gradients");
}

TEST_CASE("train::bce_with_logits: the loss and gradient written out, stable for large logits", "[train][cross]") {
    const std::vector<double> z = {-3.0, 0.0, 2.5, 40.0, -800.0};
    const std::vector<float> y = {0.0f, 1.0f, 1.0f, 0.0f, 1.0f};
    std::vector<double> d(z.size());
    const auto r = tr::bce_with_logits<double>(z, y, d);
    double want = 0;
    for (std::size_t i = 0; i < z.size(); ++i) {
        const double p = 1.0 / (1.0 + std::exp(-z[i]));
        // -log p or -log(1 - p), in a form that stays finite for the extreme rows.
        const double l = y[i] > 0.5f ? std::log1p(std::exp(-z[i])) : z[i] + std::log1p(std::exp(-z[i]));
        want += (std::isfinite(l) ? l : (y[i] > 0.5f ? -z[i] : z[i])) / 5.0;
        CHECK(std::abs(d[i] - (p - y[i]) / 5.0) < 1e-15);
    }
    CHECK(std::abs(r.loss - want) < 1e-12);
    CHECK(r.correct == 2);  // -3 for 0 and 2.5 for 1 (z = 0 is on neither side)
    CHECK(std::isfinite(r.loss));
    // Gradient against finite differences.
    for (std::size_t i = 0; i < 3; ++i) {
        auto zp = z, zm = z;
        zp[i] += 1e-6;
        zm[i] -= 1e-6;
        std::vector<double> scratch(z.size());
        const double num = (tr::bce_with_logits<double>(zp, y, scratch).loss - tr::bce_with_logits<double>(zm, y, scratch).loss) / 2e-6;
        CHECK(std::abs(num - d[i]) < 1e-8);
    }
    std::vector<double> d1(1);
    KITE_REQUIRE_THROWS_CONTAINING(tr::bce_with_logits<double>(std::vector<double>{0.0}, std::vector<float>{1.5f}, d1),
                                   kite::invalid_argument, "label 0 is 1.5");
    KITE_REQUIRE_THROWS_CONTAINING(tr::bce_with_logits<double>(std::vector<double>{}, std::vector<float>{}, d1),
                                   kite::shape_error, "expected equal and non-zero");
}

TEST_CASE("train::cross_trainer learns relevant from irrelevant pairs, repeats for a seed, and saves a loadable model", "[train][cross]") {
    // Relevant: the second text repeats the first's words; irrelevant: other words.
    std::mt19937_64 rng(5);
    std::vector<tr::cross_example> ex;
    for (int i = 0; i < 24; ++i) {
        auto p = random_pair(rng, 3, 0);
        p.ids.pop_back();
        const bool rel = i % 2 == 0;
        for (index_t k = 1; k < 4; ++k) p.ids.push_back(rel ? p.ids[k] : static_cast<std::int32_t>(5 + rng() % 94));
        p.ids.push_back(3);
        ex.push_back({p.ids, p.second, rel ? 1.0f : 0.0f});
    }
    const auto train = [&](std::uint64_t seed, int threads, index_t epochs, std::vector<double>* losses) {
        tr::bert_model<float> m(tiny(), &tiny_head());
        tr::cross_trainer<float> trainer(m, {.batch = 8, .lr = 3e-3, .epochs = epochs, .seed = seed, .threads = threads});
        for (index_t e = 0; e < epochs; ++e) {
            const double l = trainer.epoch(ex);
            if (losses) losses->push_back(l);
        }
        return m;
    };
    std::vector<double> losses;
    const auto m = train(1, 2, 20, &losses);
    INFO("first epoch " << losses.front() << ", last " << losses.back());
    CHECK(losses.back() < 0.5 * losses.front());
    const auto again = train(1, 2, 20, nullptr);
    CHECK(std::ranges::equal(m.parameters(), again.parameters()));

    // Saved as BertForSequenceClassification, read back by cross_encoder and scored the same.
    kite::test::temp_dir dir;
    const auto out = dir.path() / "epoch-1";
    tr::save_cross_encoder(out, m, kite::test::fixture("model/bert_tiny"));
    const auto cfg = nlohmann::json::parse(kite::io::read_text(out / "config.json"));
    CHECK(cfg["architectures"] == nlohmann::json::array({"BertForSequenceClassification"}));
    CHECK(cfg["id2label"].size() == 1);
    const auto head = km::read_classifier_head(out, 32);
    const auto want = m.to_head();
    CHECK(std::ranges::equal(head.pooler.flat(), want.pooler.flat()));
    CHECK(head.weight == want.weight);
    CHECK(head.bias == want.bias);
    // Training goes on from a cross-encoder's folder: its own head, not a new draw.
    const auto resumed = km::new_classifier_head(out, 32, 99);
    CHECK(resumed.weight == want.weight);
    CHECK(std::ranges::equal(resumed.pooler.flat(), want.pooler.flat()));
    CHECK(km::new_classifier_head(kite::test::fixture("model/bert_tiny"), 32, 99).weight != want.weight);
    const km::cross_encoder<> ce(kite::text::wordpiece_tokenizer::from_vocab_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n"),
                                 km::bert_encoder<>(km::read_bert(out)), head.clone());
    std::vector<km::pair_tokens> pairs;
    for (const auto& e : ex) pairs.push_back({e.ids, e.second});
    const auto scores = ce.score_tokens(pairs);
    kite::test::running_max worst;
    index_t right = 0;
    for (std::size_t i = 0; i < ex.size(); ++i) {
        tr::bert_model<float>::tape t;
        worst.add(std::abs(scores[i] - m.logit(ex[i].ids, t, ex[i].second)));
        right += (scores[i] > 0) == (ex[i].label > 0.5f);
    }
    CHECK(worst.value() < 2e-6);  // measured 4.8e-7
    CHECK(right >= 22);
    // A saved head with a non-finite weight is refused when read back.
    auto broken = want.clone();
    broken.weight[3] = std::numeric_limits<float>::quiet_NaN();
    const auto bad_dir = dir.path() / "nan-head";
    tr::save_bert(bad_dir, m.to_checkpoint(), kite::test::fixture("model/bert_tiny"), false, &broken);
    KITE_REQUIRE_THROWS_CONTAINING(km::read_classifier_head(bad_dir, 32), kite::format_error, "a non-finite weight");
    // A plain encoder folder has no classifier: named.
    KITE_REQUIRE_THROWS_CONTAINING(km::read_classifier_head(kite::test::fixture("model/bert_tiny"), 32),
                                   kite::not_found_error, "pooler.dense.weight");
    // And a model without a head cannot be trained as a cross-encoder.
    tr::bert_model<float> plain(tiny());
    KITE_REQUIRE_THROWS_CONTAINING(tr::cross_trainer<float>(plain, {}), kite::invalid_argument, "no classifier head");
}

TEST_CASE("model::encode_pair cuts a pair as Hugging Face's longest_first does", "[train][cross]") {
    const auto tok = kite::text::wordpiece_tokenizer::from_vocab_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\nc\nd\ne\nf\ng\nh\n");
    const auto p = km::encode_pair(tok, "a b c d e f", "g h", 0);
    CHECK(p.ids == std::vector<std::int32_t>{2, 4, 5, 6, 7, 8, 9, 3, 10, 11, 3});
    CHECK(p.second == 8);
    // 6 + 2 pieces into 7 - 3 = 4: the shorter (2 <= 4 / 2) stays whole, the longer gets 2.
    const auto q = km::encode_pair(tok, "a b c d e f", "g h", 7);
    CHECK(q.ids == std::vector<std::int32_t>{2, 4, 5, 3, 10, 11, 3});
    CHECK(q.second == 4);
    // Both longer than half the room: 5 / 2 = 2 for the shorter, 3 for the longer (b on a tie).
    const auto r = km::encode_pair(tok, "a b c", "d e f", 8);
    CHECK(r.ids == std::vector<std::int32_t>{2, 4, 5, 3, 7, 8, 9, 3});
    const auto s = km::encode_pair(tok, "a b c d", "e f g", 8);
    CHECK(s.ids == std::vector<std::int32_t>{2, 4, 5, 6, 3, 8, 9, 3});
    // Only the specials.
    const auto t = km::encode_pair(tok, "a b", "c", 3);
    CHECK(t.ids == std::vector<std::int32_t>{2, 3, 3});
    CHECK(t.second == 2);
    // Fits: nothing cut.
    CHECK(km::encode_pair(tok, "a b", "c", 6).ids == std::vector<std::int32_t>{2, 4, 5, 3, 6, 3});
    KITE_REQUIRE_THROWS_CONTAINING(km::encode_pair(tok, "a", "b", 2), kite::invalid_argument, "max_length = 2");
}

TEST_CASE("model::encode_pair gives Hugging Face's input_ids and token types on the notes corpus", "[train][cross]") {
    // tools/train_make_fixtures.py: all-MiniLM-L6-v2's tokenizer, truncation="longest_first".
    KITE_NEED_MODEL(weights, "all-MiniLM-L6-v2/model.safetensors", "fetch_minilm.py");
    const auto tok = kite::text::wordpiece_tokenizer::from_file(weights.parent_path());
    const auto meta = nlohmann::json::parse(kite::io::read_text(kite::test::fixture("train/pair_truncation.json")));
    std::size_t same = 0, cut = 0;
    for (const auto& c : meta["cases"]) {
        const auto p = km::encode_pair(tok, c["a"].get<std::string>(), c["b"].get<std::string>(), c["max_length"].get<std::size_t>());
        const auto want = c["ids"].get<std::vector<std::int32_t>>();
        INFO(c["a"].get<std::string>() << " | " << c["b"].get<std::string>() << " | max_length " << c["max_length"]);
        CHECK(p.ids == want);
        CHECK(p.second == c["second"].get<index_t>());
        same += p.ids == want;
        cut += want.size() == c["max_length"].get<std::size_t>();
    }
    CHECK(same == 168);
    CHECK(cut > 100);  // most cases truncate
}

TEST_CASE("model::cross_encoder_reranker reorders a pipeline's candidates by the cross-encoder's logits", "[train][cross]") {
    // A fake tokenizer with the tiny model's first words; documents are short "sentences".
    std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n";
    for (int i = 4; i < 99; ++i) vocab.append("w").append(std::to_string(i)).append("\n");  // (not + : GCC 12 -Wrestrict)
    const auto tok = kite::text::wordpiece_tokenizer::from_vocab_text(vocab);
    auto ce = std::make_shared<const km::cross_encoder<>>(tok, km::bert_encoder<>(tiny()), tiny_head().clone());
    auto docs = std::make_shared<const std::vector<std::string>>(
        std::vector<std::string>{"w5 w6 w7", "w8 w9", "w10 w11 w12 w13", "w14"});
    const km::cross_encoder_reranker<> rr(ce, docs);
    static_assert(kite::retrieval::reranker<km::cross_encoder_reranker<>>);
    const std::vector<kite::id_t> ids = {2, 0, 3};
    const auto s = rr.score("w20 w21", std::span<const kite::id_t>(ids));
    REQUIRE(s.size() == 3);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::vector<std::string> one = {(*docs)[ids[i]]};
        CHECK(std::abs(s[i] - ce->score("w20 w21", std::span<const std::string>(one))[0]) < 1e-5f);  // alone or batched
    }
    // In a pipeline: a retriever that returns every document, RRF, then the cross-encoder.
    struct all_docs {
        kite::retrieval::ranking search(std::string_view, std::size_t k) const {
            kite::retrieval::ranking r;
            for (kite::id_t i = 0; i < 4 && r.size() < k; ++i) r.push_back({1.0f / float(i + 1), i});
            return r;
        }
    };
    kite::retrieval::pipeline<all_docs, kite::fusion::rrf<60>, km::cross_encoder_reranker<>> pipe(
        kite::fusion::rrf<60>{}, rr, all_docs{});
    const auto top = pipe.search("w20 w21", 4);
    const std::vector<kite::id_t> every = {0, 1, 2, 3};
    const auto want = rr.score("w20 w21", std::span<const kite::id_t>(every));
    REQUIRE(top.size() == 4);
    for (std::size_t i = 0; i + 1 < top.size(); ++i) CHECK(want[top[i].id] >= want[top[i + 1].id]);
    CHECK(top[0].score == want[top[0].id]);
    const std::vector<kite::id_t> bad = {4};
    KITE_REQUIRE_THROWS_CONTAINING(rr.score("w20", std::span<const kite::id_t>(bad)), kite::invalid_argument,
                                   "document id 4; expected below 4");
}

TEST_CASE("cross-encoder logits, BCE loss and gradients of every parameter equal PyTorch autograd's (double and float)", "[train][cross]") {
    // tools/train_make_fixtures.py: the tiny BERT as BertForSequenceClassification (one label)
    // in float64, 6 pairs with token types, BCEWithLogits against labels 1/0, loss.backward().
    const auto dir = kite::test::fixture("train");
    const auto meta = nlohmann::json::parse(kite::io::read_text(dir / "cross_autograd.json"));
    const std::vector<double> ref = kite::test::read_f64(dir / "cross_autograd.f64");
    REQUIRE(ref.size() == 23842);
    const index_t d = 32;
    // The head's weights, as PyTorch drew them.
    const auto at = [&](const char* name) { return meta["head"][name]["offset"].get<std::size_t>(); };
    km::classifier_head head;
    head.pooler = kite::matrix<float>(d, d);
    for (index_t i = 0; i < d * d; ++i) head.pooler.flat()[i] = static_cast<float>(ref[at("bert.pooler.dense.weight") + i]);
    for (index_t i = 0; i < d; ++i) {
        head.pooler_bias.push_back(static_cast<float>(ref[at("bert.pooler.dense.bias") + i]));
        head.weight.push_back(static_cast<float>(ref[at("classifier.weight") + i]));
    }
    head.bias = static_cast<float>(ref[at("classifier.bias")]);
    const auto pairs = meta["pairs"].get<std::vector<std::vector<std::int32_t>>>();
    const auto second = meta["second"].get<std::vector<index_t>>();
    const auto labels = meta["labels"].get<std::vector<float>>();
    const auto want_logits = meta["logits"].get<std::vector<double>>();
    const auto run = [&]<class T>(std::type_identity<T>) {
        tr::bert_model<T> m(tiny(), &head);
        const std::size_t n = pairs.size();
        std::vector<typename tr::bert_model<T>::tape> tapes(n);
        std::vector<T> z(n), dz(n);
        kite::test::running_max logit_err;
        for (std::size_t i = 0; i < n; ++i) {
            z[i] = m.logit(pairs[i], tapes[i], second[i]);
            logit_err.add(std::abs(double(z[i]) - want_logits[i]));
        }
        const auto l = tr::bce_with_logits<T>(z, labels, dz);
        auto g = m.gradient_buffer();
        for (std::size_t i = 0; i < n; ++i) m.backward(tapes[i], std::span<const T>(&dz[i], 1), g.span());
        const auto cmp = kite::test::compare_autograd<T>(m, g.span(), meta["tensors"], ref);
        CHECK(cmp.compared == ref.size() - (d * d + d + d + 1));  // every gradient but the head's own values
        return std::tuple{l.loss, logit_err.value(), cmp.worst};
    };
    const auto [loss_d, logit_d, err_d] = run(std::type_identity<double>{});
    CHECK(loss_d == Approx(meta["loss"].get<double>()).epsilon(1e-13));
    CHECK(logit_d < 3e-15);  // measured 3.1e-16
    CHECK(err_d < 3e-14);    // measured 3.2e-15 (the bar: 1e-9)
    const auto [loss_f, logit_f, err_f] = run(std::type_identity<float>{});
    CHECK(loss_f == Approx(meta["loss"].get<double>()).epsilon(1e-5));
    CHECK(logit_f < 1e-6);  // measured 1.3e-7
    CHECK(err_f < 1e-5);    // measured 2.3e-6 (the bar: 1e-4)
}
