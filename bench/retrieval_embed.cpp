// kite's side of bench/embed_vs_st.py: encodes a list of texts with kite's sentence encoder
// (all-MiniLM-L6-v2: WordPiece, 256 word pieces, BERT, mean pooling, L2 normalisation) and prints
// one JSON object: texts, word pieces, load time, the time of each timed pass, and the FLOP rate of
// the median pass with its fraction of the float32 FMA peak measured on the same threads (float
// weights; the int8 kinds report null there). The first pass
// is a warm-up (buffers and pages touched once; DESIGN.md: benchmarks time the steady state);
// tokenization is inside every timed pass, as in sentence-transformers' encode().
//
// Usage: bench_embed --model DIR --texts FILE.json [--threads T] [--batch 32] [--passes 3]
//                    [--weights f32|f32dense|int8|w8a8] [--out FILE.npy]
//   FILE.json: a JSON array of strings. --out writes the embeddings [texts][384] (float32 .npy)
//   so the script can compare them with sentence-transformers'.
#include <kite/core/parallel.hpp>
#include <kite/model/sentence_encoder.hpp>
#include <kite/retrieval/vector_io.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "bench_embed: %s\nusage: bench_embed --model DIR --texts FILE.json [--threads T] [--batch 32] "
                 "[--passes 3] [--weights f32|f32dense|int8|w8a8] [--out FILE.npy]\n",
                 why);
    std::exit(2);
}

template <class Weights>
int run(const std::filesystem::path& model, const std::vector<std::string>& texts, int threads, kite::index_t batch,
        int passes, const std::string& weights, const std::filesystem::path& out) {
    const auto t_load = std::chrono::steady_clock::now();
    const auto enc = kite::model::sentence_encoder<Weights>::load(
        model, {.batch_size = batch, .threads = threads});
    const double load_s = seconds_since(t_load);
    // FLOP of one pass (multiply-adds counted twice): per text of L word pieces and per layer,
    // the linear layers 2 L (4 H^2 + 2 H I) and attention's two products 4 L^2 H.
    const auto& cfg = enc.encoder().config();
    const double H = double(cfg.hidden_size), I = double(cfg.intermediate_size), layers = double(enc.encoder().num_layers());
    std::size_t pieces = 0;
    double flop = 0;
    for (const auto& t : texts) {
        const double L = double(enc.tokenize(t).size());
        pieces += static_cast<std::size_t>(L);
        flop += layers * (2 * L * (4 * H * H + 2 * H * I) + 4 * L * L * H);
    }
    // The limit: float32 weights against the FMA peak; the int8 kinds run on integer dot products
    // (VNNI), a different limit, and are not stated as a fraction.
    const bool float_weights = weights == "f32" || weights == "f32dense";
    const double peak = kite::bench::measure_fma_peak_gflops(threads);
    kite::matrix<float> emb(texts.size(), enc.dim());
    std::vector<double> times;
    for (int p = 0; p <= passes; ++p) {
        const auto t0 = std::chrono::steady_clock::now();
        enc.encode_into(std::span<const std::string>(texts), emb.view());
        if (p > 0) times.push_back(seconds_since(t0));  // pass 0: warm-up
    }
    if (!out.empty()) kite::retrieval::write_npy(out, emb);
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    std::printf("{\"engine\": \"kite\", \"weights\": \"%s\", \"threads\": %d, \"batch\": %zu, \"texts\": %zu, "
                "\"word_pieces\": %zu, \"load_seconds\": %.3f, \"seconds\": [",
                weights.c_str(), threads, static_cast<std::size_t>(batch), texts.size(), pieces, load_s);
    for (std::size_t i = 0; i < times.size(); ++i) std::printf("%s%.4f", i ? ", " : "", times[i]);
    const double gflops = flop / median / 1e9;
    std::printf("], \"sentences_per_s\": %.2f, \"gflop_per_pass\": %.2f, \"gflop_per_s\": %.1f, "
                "\"fma_peak_gflop_per_s\": %.1f, \"of_fma_peak\": ",
                static_cast<double>(texts.size()) / median, flop / 1e9, gflops, peak);
    if (float_weights) std::printf("%.3f}\n", gflops / peak);
    else std::printf("null}\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    std::filesystem::path model, texts_file, out;
    int threads = 1, passes = 3;
    kite::index_t batch = 32;
    std::string weights = "f32";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage((a + " needs a value").c_str());
            return argv[++i];
        };
        if (a == "--model") model = value();
        else if (a == "--texts") texts_file = value();
        else if (a == "--threads") threads = std::stoi(value());
        else if (a == "--batch") batch = static_cast<kite::index_t>(std::stoul(value()));
        else if (a == "--passes") passes = std::stoi(value());
        else if (a == "--weights") weights = value();
        else if (a == "--out") out = value();
        else usage(("unknown argument " + a).c_str());
    }
    if (model.empty() || texts_file.empty()) usage("--model and --texts are required");
    if (threads < 1 || passes < 1 || batch < 1) usage("--threads, --passes and --batch must be >= 1");
    std::fprintf(stderr, "host: %s\n", kite::cpu::describe().c_str());  // stdout holds only the JSON
    std::ifstream f(texts_file);
    if (!f) usage("cannot read --texts");
    const auto texts = nlohmann::json::parse(f).get<std::vector<std::string>>();
    kite::set_num_threads(threads);  // every parallel region, not only the GEMMs
    try {
        if (weights == "f32") return run<kite::quant::f32_packed>(model, texts, threads, batch, passes, weights, out);
        if (weights == "f32dense") return run<kite::quant::f32>(model, texts, threads, batch, passes, weights, out);
        if (weights == "int8") return run<kite::quant::absmax<8>>(model, texts, threads, batch, passes, weights, out);
        if (weights == "w8a8") return run<kite::quant::w8a8_packed>(model, texts, threads, batch, passes, weights, out);
        usage("--weights must be f32, f32dense, int8 or w8a8");
    } catch (const kite::error& e) {
        std::fprintf(stderr, "bench_embed: %s\n", e.what());
        return 1;
    }
}
