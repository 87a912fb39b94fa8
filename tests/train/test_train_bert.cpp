// kite::train::bert_model on the tiny BERT fixture: its forward pass equals the double reference
// encoder and (as a float checkpoint) kite's inference encoder, its backward pass equals finite
// differences for parameters of every tensor, and MNR fine-tuning on a few pairs lowers the loss.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/encoder.hpp"
#include "kite/model/encoder_reference.hpp"
#include "kite/model/formats/bert_loader.hpp"
#include "kite/train.hpp"
#include "autograd_check.hpp"
#include "kite_test.hpp"

namespace {

using kite::index_t;
namespace km = kite::model;
namespace tr = kite::train;

using kite::test::tiny;

std::vector<std::int32_t> sentence(std::mt19937_64& rng, index_t words) {
    std::vector<std::int32_t> ids = {2};  // [CLS]
    for (index_t i = 0; i < words; ++i) ids.push_back(static_cast<std::int32_t>(5 + rng() % 94));
    ids.push_back(3);  // [SEP]
    return ids;
}

}  // namespace

TEST_CASE("train::bert_model: forward equals the reference encoder; to_checkpoint gives the same weights", "[train][bert]") {
    const tr::bert_model<double> m(tiny());
    CHECK(m.num_layers() == 2);
    CHECK(m.tensors().size() == 5 + 12 * 2);
    CHECK(m.tensors()[5].name == "encoder.layer.0.attention.self.qkv.weight");
    std::mt19937_64 rng(1);
    for (const index_t words : {1, 5, 17}) {
        const auto ids = sentence(rng, words);
        tr::bert_model<double>::tape t;
        const auto& s = m.states(ids, t);
        const auto ref = km::reference::bert_states(tiny(), ids);
        kite::test::running_max worst;
        for (std::size_t i = 0; i < ref.size(); ++i) worst.add(std::abs(s.flat()[i] - ref[i]));
        INFO(words << " words");
        CHECK(worst.value() < 1e-12);
        const auto e = m.embed(ids, t);
        const auto eref = km::reference::bert_embedding(tiny(), ids, km::pooling::mean, false);
        kite::test::running_max we;
        for (std::size_t i = 0; i < e.size(); ++i) we.add(std::abs(e[i] - eref[i]));
        CHECK(we.value() < 1e-12);
    }
    // Float weights go back exactly.
    const tr::bert_model<float> mf(tiny());
    const auto ck = mf.to_checkpoint();
    CHECK(std::ranges::equal(ck.word_embeddings.flat(), tiny().word_embeddings.flat()));
    CHECK(std::ranges::equal(ck.layers[1].down.flat(), tiny().layers[1].down.flat()));
    CHECK(ck.layers[0].mlp_norm_bias == tiny().layers[0].mlp_norm_bias);
}

TEST_CASE("train::bert_model: backward equals finite differences for parameters of every tensor", "[train][bert]") {
    tr::bert_model<double> m(tiny());
    std::mt19937_64 rng(2);
    const auto ids = sentence(rng, 6);
    std::vector<double> R(32);
    std::normal_distribution<double> nd;
    for (auto& r : R) r = nd(rng);
    const auto loss = [&] {
        tr::bert_model<double>::tape t;
        const auto e = m.embed(ids, t);
        double s = 0;
        for (std::size_t i = 0; i < e.size(); ++i) s += e[i] * R[i];
        return s;
    };
    tr::bert_model<double>::tape t;
    (void)m.embed(ids, t);
    std::vector<double> g(m.parameters().size(), 0.0);
    m.backward(t, R, g);
    // Six parameters of each tensor (those a sequence touches: its word rows, its positions).
    kite::test::running_max worst;
    index_t checked = 0, nonzero = 0;
    for (const auto& info : m.tensors()) {
        std::vector<std::size_t> picks;
        for (int k = 0; k < 6; ++k) {
            index_t row = static_cast<index_t>(rng() % info.rows);
            if (info.name.find("word_embeddings") != std::string::npos) row = static_cast<index_t>(ids[rng() % ids.size()]);
            if (info.name.find("position_embeddings") != std::string::npos) row = static_cast<index_t>(rng() % ids.size());
            if (info.name.find("token_type") != std::string::npos) row = 0;
            picks.push_back(info.offset + static_cast<std::size_t>(row) * info.cols + rng() % info.cols);
        }
        for (const std::size_t p : picks) {
            const double num = kite::test::central_difference(m.parameters()[p], loss);
            worst.add(kite::test::relative_error(g[p], num, 1.0));
            ++checked;
            nonzero += g[p] != 0.0;
        }
    }
    INFO(checked << " parameters, " << nonzero << " with a nonzero gradient");
    CHECK(worst.value() < 2e-9);  // measured 3e-10
    CHECK(nonzero > checked / 2);
    // A word the sequence does not contain gets no gradient.
    const auto& we = m.tensors()[0];
    std::int32_t unused = 5;
    while (std::find(ids.begin(), ids.end(), unused) != ids.end()) ++unused;
    for (index_t j = 0; j < we.cols; ++j) CHECK(g[we.offset + static_cast<std::size_t>(unused) * we.cols + j] == 0.0);
}

TEST_CASE("train::bert_model: MNR fine-tuning with AdamW lowers the loss on its pairs", "[train][bert]") {
    tr::bert_model<float> m(tiny());
    std::mt19937_64 rng(3);
    // Eight pairs: the positive repeats the anchor's words in another order.
    std::vector<std::vector<std::int32_t>> anchors, positives;
    for (int i = 0; i < 8; ++i) {
        auto a = sentence(rng, 4 + i % 3);
        auto p = a;
        std::shuffle(p.begin() + 1, p.end() - 1, rng);
        anchors.push_back(a);
        positives.push_back(p);
    }
    tr::adamw opt({.lr = 1e-3, .weight_decay = 0.01});
    auto st = tr::adamw::state_for(m.parameters().size());
    const auto step = [&](bool train) {
        const index_t B = anchors.size(), d = m.config().hidden_size;
        kite::matrix<float> A(B, d), P(B, d);
        std::vector<tr::bert_model<float>::tape> ta(B), tp(B);
        for (index_t i = 0; i < B; ++i) {
            const auto a = m.embed(anchors[i], ta[i]);
            const auto p = m.embed(positives[i], tp[i]);
            std::copy(a.begin(), a.end(), &A(i, 0));
            std::copy(p.begin(), p.end(), &P(i, 0));
        }
        const auto r = tr::mnr_loss<float>(A, P);
        if (train) {
            std::vector<float> g(m.parameters().size(), 0.0f);
            for (index_t i = 0; i < B; ++i) {
                m.backward(ta[i], std::span<const float>(&r.d_anchors(i, 0), d), g);
                m.backward(tp[i], std::span<const float>(&r.d_candidates(i, 0), d), g);
            }
            std::vector<std::span<float>> gs = {g};
            tr::clip_grad_norm<float>(gs, 1.0);
            opt.step<float>(m.parameters(), g, st);
        }
        return r.loss;
    };
    const float before = step(false);
    for (int e = 0; e < 30; ++e) step(true);
    const float after = step(false);
    INFO("MNR loss " << before << " -> " << after);
    CHECK(after < 0.5f * before);
    // The trained weights run in kite's inference encoder.
    const auto ck = m.to_checkpoint();
    const km::bert_encoder<> enc(ck);
    CHECK(enc.config().hidden_size == 32);
}

TEST_CASE("train::save_bert writes a model folder that read_bert reads back exactly", "[train][bert][io]") {
    kite::test::temp_dir dir;
    // A trained-looking checkpoint: the fixture with every weight nudged.
    tr::bert_model<float> m(tiny());
    for (auto& p : m.parameters()) p += 1e-3f;
    const auto ck = m.to_checkpoint();
    const auto out = dir.path() / "epoch-1";
    tr::save_bert(out, ck, kite::test::fixture("model/bert_tiny"));
    const auto back = km::read_bert(out);
    CHECK(back.config.hidden_size == 32);
    CHECK(std::ranges::equal(back.word_embeddings.flat(), ck.word_embeddings.flat()));
    CHECK(std::ranges::equal(back.position_embeddings.flat(), ck.position_embeddings.flat()));
    CHECK(back.embedding_norm_bias == ck.embedding_norm_bias);
    for (std::size_t l = 0; l < ck.layers.size(); ++l) {
        CHECK(std::ranges::equal(back.layers[l].qkv.flat(), ck.layers[l].qkv.flat()));
        CHECK(back.layers[l].qkv_bias == ck.layers[l].qkv_bias);
        CHECK(std::ranges::equal(back.layers[l].down.flat(), ck.layers[l].down.flat()));
        CHECK(back.layers[l].mlp_norm_weight == ck.layers[l].mlp_norm_weight);
    }
    // The same weights give the same states.
    const std::vector<std::int32_t> ids = {2, 7, 9, 3};
    const auto a = km::reference::bert_states(ck, ids), b = km::reference::bert_states(back, ids);
    CHECK(a == b);
    // No temporary left; an existing folder is not replaced unless asked; bad sources are named.
    for (const auto& e : std::filesystem::directory_iterator(dir.path()))
        CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    KITE_REQUIRE_THROWS_CONTAINING(tr::save_bert(out, ck, kite::test::fixture("model/bert_tiny")), kite::io_error,
                                   "exists");
    tr::save_bert(out, ck, kite::test::fixture("model/bert_tiny"), true);
    KITE_REQUIRE_THROWS_CONTAINING(tr::save_bert(dir.path() / "x", ck, dir.path()), kite::invalid_argument,
                                   "has no config.json");
    // A folder that cannot be made (its parent is a file): an io_error naming it, nothing left.
    { std::ofstream(dir.path() / "plain-file") << "x"; }
    const auto under_file = dir.path() / "plain-file" / "model";
    KITE_REQUIRE_THROWS_CONTAINING(tr::save_bert(under_file, ck, kite::test::fixture("model/bert_tiny")),
                                   kite::io_error, "cannot write '" + under_file.string() + "'");
    CHECK(std::filesystem::is_regular_file(dir.path() / "plain-file"));
    // Not a BERT checkpoint with fused q/k/v: refused before anything is written.
    auto odd = m.to_checkpoint();
    odd.layers[1].qkv = kite::matrix<float>(2 * 32, 32);
    const auto not_written = dir.path() / "odd";
    KITE_REQUIRE_THROWS_CONTAINING(tr::save_bert(not_written, odd, kite::test::fixture("model/bert_tiny")),
                                   kite::invalid_argument, "layer 1 has 64 fused q/k/v rows; expected 96");
    CHECK_FALSE(std::filesystem::exists(not_written));
    for (const auto& e : std::filesystem::directory_iterator(dir.path()))
        CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
}

namespace {

std::vector<tr::text_pair> toy_pairs(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<tr::text_pair> out;
    for (std::size_t i = 0; i < n; ++i) {
        auto a = sentence(rng, 3 + i % 4);
        auto p = a;
        std::shuffle(p.begin() + 1, p.end() - 1, rng);
        p.insert(p.end() - 1, static_cast<std::int32_t>(5 + rng() % 94));  // and one more word
        out.push_back({a, p, {}});
    }
    return out;
}

}  // namespace

TEST_CASE("train::mnr_trainer: one step, with tapes kept or recomputed, equals plain MNR by hand (to float rounding)", "[train][bert]") {
    const auto pairs = toy_pairs(6, 4);
    std::vector<const tr::text_pair*> batch;
    for (const auto& p : pairs) batch.push_back(&p);
    // The trainer with its tapes kept (the default budget), and with gradient caching (budget 0:
    // every sequence embedded, then run again with its tape), one thread each.
    tr::bert_model<float> a(tiny()), c(tiny());
    tr::mnr_trainer<float> trainer(a, {.batch = 6, .lr = 1e-3, .threads = 1});
    tr::mnr_trainer<float> cached(c, {.batch = 6, .lr = 1e-3, .threads = 1, .activation_budget = 0});
    const auto rep = trainer.step(batch, 0.5);
    const auto rep_cached = cached.step(batch, 0.5);
    CHECK(rep.kept_activations);
    CHECK_FALSE(rep_cached.kept_activations);
    // The two ways run the same forward code on the same inputs: identical bit for bit.
    CHECK(rep.loss == rep_cached.loss);
    CHECK(std::equal(trainer.gradient().begin(), trainer.gradient().end(), cached.gradient().begin(),
                     cached.gradient().end()));
    CHECK(std::equal(a.parameters().begin(), a.parameters().end(), c.parameters().begin(), c.parameters().end()));
    // By hand: every tape kept, one backward per sequence in the same order.
    tr::bert_model<float> b(tiny());
    const index_t B = 6, d = 32;
    std::vector<tr::bert_model<float>::tape> tapes(2 * B);
    kite::matrix<float> emb(2 * B, d);
    for (index_t i = 0; i < 2 * B; ++i) {
        const auto e = b.embed(i < B ? pairs[i].anchor : pairs[i - B].positive, tapes[i]);
        std::copy(e.begin(), e.end(), &emb(i, 0));
    }
    const auto r = tr::mnr_loss<float>(emb.view().rows_slice(0, B), emb.view().rows_slice(B, B));
    auto gb = b.gradient_buffer();
    const std::span<float> g = gb.span();
    for (index_t i = 0; i < 2 * B; ++i)
        b.backward(tapes[i], std::span<const float>(i < B ? &r.d_anchors(i, 0) : &r.d_candidates(i - B, 0), d), g);
    const std::span<float> all[1] = {g};
    const double norm = tr::clip_grad_norm<float>(std::span<const std::span<float>>(all), 1.0);
    auto st = tr::adamw::state_for(g.size());
    tr::adamw({.lr = 1e-3, .weight_decay = 0.01}).step<float>(b.parameters(), g, st, 0.5);
    // Equal up to float rounding: the compiler may fuse a multiply and an add (FMA) in one
    // inlined copy of a loop and not in another, so two call sites need not agree to the bit.
    CHECK(rep.loss == Approx(r.loss).epsilon(1e-6));
    CHECK(rep.grad_norm == Approx(norm).epsilon(1e-6));
    CHECK(rep.lr == Approx(5e-4));
    // The (clipped) gradients agree to float rounding; Adam's first step then moves every weight
    // by lr * factor against its gradient's sign, so the weights agree wherever the gradient is
    // not rounding noise around zero.
    REQUIRE(trainer.gradient().size() == g.size());
    kite::test::running_max worst, largest, moved;
    for (std::size_t i = 0; i < g.size(); ++i) {
        worst.add(std::abs(double(trainer.gradient()[i]) - double(g[i])));
        largest.add(std::abs(double(g[i])));
        if (std::abs(g[i]) > 1e-4f)
            moved.add(std::abs(double(a.parameters()[i]) - double(b.parameters()[i])));
    }
    INFO("largest gradient entry " << largest.value());
    CHECK(worst.value() < 5e-6 * largest.value());  // measured 7.7e-7 (release build)
    CHECK(moved.value() < 1e-9);
}

TEST_CASE("train::mnr_trainer: epochs lower the loss, and a seed and thread count repeat exactly", "[train][bert]") {
    const auto pairs = toy_pairs(20, 5);
    const auto run = [&](int threads) {
        tr::bert_model<float> m(tiny());
        tr::mnr_trainer<float> trainer(m, {.batch = 8, .lr = 2e-3, .epochs = 6, .threads = threads});
        CHECK(trainer.steps_per_epoch(20) == 3);  // 8 + 8 + 4
        std::vector<double> losses;
        std::uint64_t last_step = 0, total = 0;
        for (int e = 0; e < 6; ++e)
            losses.push_back(trainer.epoch(pairs, [&](const tr::step_report& s) {
                last_step = s.step;
                total = s.total_steps;
            }));
        CHECK(last_step == 18);
        CHECK(total == 18);
        return std::pair{losses, std::vector<float>(m.parameters().begin(), m.parameters().end())};
    };
    const auto [losses, w1] = run(2);
    INFO("mean loss per epoch: " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.5 * losses.front());
    const auto [losses2, w2] = run(2);
    CHECK(w1 == w2);
    CHECK(losses == losses2);
    tr::bert_model<float> m(tiny());
    KITE_REQUIRE_THROWS_CONTAINING((tr::mnr_trainer<float>(m, {.batch = 1})), kite::invalid_argument, "batch = 1");
    KITE_REQUIRE_THROWS_CONTAINING((tr::mnr_trainer<float>(m, {.epochs = 0})), kite::invalid_argument, "epochs = 0");
    for (const double r : {-0.1, 1.5, std::nan("")})
        KITE_REQUIRE_THROWS_CONTAINING((tr::mnr_trainer<float>(m, {.warmup_ratio = r})), kite::invalid_argument,
                                       "warmup_ratio = ");
    tr::mnr_trainer<float> t(m, {});
    KITE_REQUIRE_THROWS_CONTAINING(t.epoch(std::span<const tr::text_pair>(pairs).first(1)), kite::invalid_argument,
                                   "1 examples; expected at least 2");
}

TEST_CASE("train::bert_model: tape_bytes counts what a tape holds", "[train][bert]") {
    tr::bert_model<float> m(tiny());
    std::mt19937_64 rng(9);
    for (const index_t words : {0, 1, 5, 14}) {
        const auto ids = sentence(rng, words);
        tr::bert_model<float>::tape t;
        (void)m.embed(ids, t);
        std::size_t values = t.emb_ln.y.flat().size() + t.emb_ln.x_hat.flat().size() + t.emb_ln.inv_std.size() +
                             t.states.flat().size();
        for (const auto& L : t.layers)
            values += L.x.flat().size() + L.qkv.flat().size() + L.up.flat().size() +
                      L.act.flat().size() + L.att.context.flat().size() + L.att.probs.flat().size() +
                      L.ln1.y.flat().size() + L.ln1.x_hat.flat().size() + L.ln1.inv_std.size() + L.ln2.y.flat().size() +
                      L.ln2.x_hat.flat().size() + L.ln2.inv_std.size();
        INFO(ids.size() << " tokens");
        CHECK(m.tape_bytes(ids.size()) == values * sizeof(float) + ids.size() * sizeof(std::int32_t));
    }
}

TEST_CASE("train::keep_layers and distil_trainer: a one-layer student learns the two-layer teacher's embeddings", "[train][bert][distil]") {
    const index_t second[] = {1};
    const auto one = tr::keep_layers(tiny(), second);
    CHECK(one.config.num_layers == 1);
    REQUIRE(one.layers.size() == 1);
    CHECK(std::ranges::equal(one.layers[0].qkv.flat(), tiny().layers[1].qkv.flat()));
    CHECK(std::ranges::equal(one.word_embeddings.flat(), tiny().word_embeddings.flat()));
    KITE_REQUIRE_THROWS_CONTAINING(tr::keep_layers(tiny(), {}), kite::invalid_argument, "no layers");
    const index_t twice[] = {0, 0}, outside[] = {0, 2};
    KITE_REQUIRE_THROWS_CONTAINING(tr::keep_layers(tiny(), twice), kite::invalid_argument, "layer 0 listed twice");
    KITE_REQUIRE_THROWS_CONTAINING(tr::keep_layers(tiny(), outside), kite::invalid_argument, "layer 2; expected 0 to 1");

    // The teacher's normalised embeddings of 24 sentences are the targets.
    tr::bert_model<float> teacher(tiny());
    std::mt19937_64 rng(12);
    std::vector<tr::distil_example> data;
    for (int i = 0; i < 24; ++i) {
        tr::distil_example e;
        e.ids = sentence(rng, 2 + i % 9);
        tr::bert_model<float>::tape t;
        const auto v = teacher.embed(e.ids, t);
        e.target = tr::l2_normalize<float>(v);
        data.push_back(std::move(e));
    }
    const index_t first[] = {0};
    const auto run = [&] {
        tr::bert_model<float> student(tr::keep_layers(tiny(), first));
        tr::distil_trainer<float> trainer(student, {.batch = 8, .lr = 3e-3, .epochs = 10, .threads = 2});
        CHECK(trainer.steps_per_epoch(24) == 3);
        std::vector<double> losses, cosines;
        for (int e = 0; e < 10; ++e) {
            double cos = 0;
            losses.push_back(trainer.epoch(data, [&](const tr::step_report& s) { cos += s.cosine / 3; }));
            cosines.push_back(cos);
        }
        return std::tuple{losses, cosines, std::vector<float>(student.parameters().begin(), student.parameters().end())};
    };
    const auto [losses, cosines, w1] = run();
    INFO("loss " << losses.front() << " -> " << losses.back() << ", cosine " << cosines.front() << " -> " << cosines.back());
    CHECK(losses.back() < 0.25 * losses.front());
    CHECK(cosines.back() > cosines.front());
    CHECK(cosines.back() > 0.95);
    const auto [losses2, cosines2, w2] = run();
    CHECK(w1 == w2);
    tr::bert_model<float> s0(one);
    KITE_REQUIRE_THROWS_CONTAINING((tr::distil_trainer<float>(s0, {.batch = 0})), kite::invalid_argument, "batch = 0");
    KITE_REQUIRE_THROWS_CONTAINING((tr::distil_trainer<float>(s0, {.epochs = 0})), kite::invalid_argument, "epochs = 0");
    tr::distil_trainer<float> t0(s0, {});
    KITE_REQUIRE_THROWS_CONTAINING(t0.epoch({}), kite::invalid_argument, "0 examples; expected at least 1");

    // Saved, the student's folder says 1 layer, and read_bert gives the same states.
    kite::test::temp_dir dir;
    tr::bert_model<float> student(one);
    const auto ck = student.to_checkpoint();
    tr::save_bert(dir.path() / "student", ck, kite::test::fixture("model/bert_tiny"));
    const auto back = km::read_bert(dir.path() / "student");
    CHECK(back.config.num_layers == 1);
    const std::vector<std::int32_t> ids = {2, 7, 9, 3};
    CHECK(km::reference::bert_states(ck, ids) == km::reference::bert_states(back, ids));
    // The teacher's own folder copies config.json byte for byte.
    tr::save_bert(dir.path() / "same", teacher.to_checkpoint(), kite::test::fixture("model/bert_tiny"));
    CHECK(kite::io::read_text(dir.path() / "same" / "config.json") ==
          kite::io::read_text(kite::test::fixture("model/bert_tiny") / "config.json"));
}

TEST_CASE("train::mnr_trainer: hard negatives join the candidates after the positives", "[train][bert]") {
    auto pairs = toy_pairs(5, 21);
    std::mt19937_64 rng(22);
    for (const std::size_t i : {0u, 3u}) pairs[i].negative = sentence(rng, 4);  // two of five pairs have one
    std::vector<const tr::text_pair*> batch;
    for (const auto& p : pairs) batch.push_back(&p);
    tr::bert_model<float> m(tiny());
    // By hand, before the step changes the weights: anchors against 5 positives + 2 negatives.
    const index_t B = 5, d = 32;
    kite::matrix<float> anchors(B, d), candidates(B + 2, d);
    const auto put = [&](kite::matrix<float>& to, index_t row, const std::vector<std::int32_t>& ids) {
        tr::bert_model<float>::tape t;
        const auto e = m.embed(ids, t);
        std::copy(e.begin(), e.end(), &to(row, 0));
    };
    for (index_t i = 0; i < B; ++i) {
        put(anchors, i, pairs[i].anchor);
        put(candidates, i, pairs[i].positive);
    }
    put(candidates, B, pairs[0].negative);
    put(candidates, B + 1, pairs[3].negative);
    const auto r = tr::mnr_loss<float>(anchors, candidates);
    const auto plain = tr::mnr_loss<float>(anchors, candidates.view().rows_slice(0, B));
    tr::mnr_trainer<float> trainer(m, {.batch = 5, .lr = 1e-3, .threads = 2});
    const auto rep = trainer.step(batch, 1.0);
    CHECK(rep.loss == Approx(r.loss).epsilon(1e-6));
    CHECK(r.loss > plain.loss);  // more candidates to beat
    CHECK(rep.pairs == 5);
}

TEST_CASE("train::bert_model: MNR gradients of every parameter equal PyTorch autograd's (double and float)", "[train][bert]") {
    // tools/train_make_fixtures.py: the tiny BertModel in float64, 4 anchors, 4 positives and 2
    // hard negatives, mean pooling, MultipleNegativesRankingLoss; loss.backward().
    const auto dir = kite::test::fixture("train");
    const auto meta = nlohmann::json::parse(kite::io::read_text(dir / "mnr_autograd.json"));
    const std::vector<double> ref = kite::test::read_f64(dir / "mnr_autograd.f64");
    REQUIRE(ref.size() == 21664);
    const auto ids = [&](const char* key) { return meta[key].get<std::vector<std::vector<std::int32_t>>>(); };
    const auto run = [&]<class T>(std::type_identity<T>) {
        tr::bert_model<T> m(tiny());
        auto seqs = ids("anchors");
        const index_t B = seqs.size();
        for (const char* k : {"positives", "negatives"})
            for (auto& s : ids(k)) seqs.push_back(std::move(s));
        const index_t C = seqs.size() - B, d = 32;
        std::vector<typename tr::bert_model<T>::tape> tapes(seqs.size());
        kite::matrix<T> emb(seqs.size(), d);
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            const auto e = m.embed(seqs[i], tapes[i]);
            std::copy(e.begin(), e.end(), &emb(i, 0));
        }
        const auto r = tr::mnr_loss<T>(emb.view().rows_slice(0, B), emb.view().rows_slice(B, C), T(20));
        auto g = m.gradient_buffer();
        for (index_t i = 0; i < B + C; ++i)
            m.backward(tapes[i], std::span<const T>(i < B ? &r.d_anchors(i, 0) : &r.d_candidates(i - B, 0), d), g.span());
        const auto cmp = kite::test::compare_autograd<T>(m, g.span(), meta["tensors"], ref);
        CHECK(cmp.compared == ref.size());
        return std::pair{double(r.loss), cmp.worst};
    };
    const auto [loss_d, err_d] = run(std::type_identity<double>{});
    CHECK(loss_d == Approx(meta["loss"].get<double>()).epsilon(1e-13));
    CHECK(err_d < 1e-13);  // measured 2.0e-14 (the bar: 1e-9)
    const auto [loss_f, err_f] = run(std::type_identity<float>{});
    CHECK(loss_f == Approx(meta["loss"].get<double>()).epsilon(1e-6));
    CHECK(err_f < 3e-5);  // measured 9.0e-6 (the bar: 1e-4)
}
