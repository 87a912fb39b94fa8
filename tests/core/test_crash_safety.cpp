// Crash safety of every file writer (kite::io::atomic_file underneath): a child process saves a
// flat index (FAISS format), a BM25 index, 4-bit quantized weights and a .npy matrix to the same
// paths over and over, alternating two contents A and B, and is killed with SIGKILL at a random
// moment. Each file must then be byte for byte A or B (never a mix, never truncated) and load,
// and the temporaries the killed writes left behind are removed by the next save to that path.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kite/core/io.hpp"
#include "kite/quant/rtn.hpp"
#include "kite/quant/serialize.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/faiss_io.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite/retrieval/vector_io.hpp"
#include "kite/text/pretokenized.hpp"
#include "kite_crash.hpp"

namespace fs = std::filesystem;
namespace kr = kite::retrieval;
using kite::test::temp_dir;

namespace {

using bm25_t = kr::bm25_index<kite::bm25::lucene, kite::text::pretokenized>;
using quant_t = kite::quant::absmax<4, 32>::format;

std::string bytes_of(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Two versions of each artefact, different in content and in size.
struct artefacts {
    kite::matrix<float> m[2];
    kr::flat_index<kite::metric::l2> flat[2]{kr::flat_index<kite::metric::l2>(16), kr::flat_index<kite::metric::l2>(16)};
    bm25_t bm25[2];
    quant_t q[2];
    artefacts() {
        for (int v = 0; v < 2; ++v) {
            const kite::index_t rows = 200 + 150 * v;
            m[v] = kite::matrix<float>(rows, 64);
            const auto x = kite::test::randn(static_cast<std::size_t>(rows) * 64, 7 + v);
            std::copy(x.begin(), x.end(), m[v].data());
            flat[v].add(kite::matrix_view<const float>(m[v].data(), rows * 4, 16));
            std::vector<std::vector<std::uint32_t>> docs;
            std::mt19937 rng(11 + v);
            for (int d = 0; d < 300 + 200 * v; ++d) {
                std::vector<std::uint32_t> doc;
                for (int t = 0; t < 20; ++t) doc.push_back(rng() % 500);
                docs.push_back(std::move(doc));
            }
            std::vector<std::span<const std::uint32_t>> spans(docs.begin(), docs.end());
            bm25[v].add_all(spans);
            q[v] = kite::quant::absmax<4, 32>{}.quantize(m[v].view());
        }
    }
    void save(int v, const fs::path& dir) const {
        kr::write_faiss(flat[v], dir / "index.faiss");
        bm25[v].save(dir / "bm25.idx");
        kite::quant::save(dir / "w.kq", q[v]);
        kr::write_npy<float>(dir / "m.npy", m[v].view());
    }
};

const char* const files[] = {"index.faiss", "bm25.idx", "w.kq", "m.npy"};

std::size_t temporaries(const fs::path& dir) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().find(".tmp-") != std::string::npos;
    return n;
}

}  // namespace

TEST_CASE("writers killed with SIGKILL leave the previous file whole and loadable", "[core][io][crash]") {
    const artefacts a;
    temp_dir ref_dir[2];
    std::string ref[2][4];
    for (int v = 0; v < 2; ++v) {
        a.save(v, ref_dir[v].path());
        for (int f = 0; f < 4; ++f) ref[v][f] = bytes_of(ref_dir[v].path() / files[f]);
    }
    for (int f = 0; f < 4; ++f) REQUIRE(ref[0][f] != ref[1][f]);

    // Each kill lands after the writer's first full save, at a random point of the next two saves
    // (timed here, so a slow build such as ASAN's scales with it). The rounds go on past the
    // minimum until some kill has hit a write in the middle (a temporary left behind): a kill
    // between two files proves little, and how often that happens depends on the file system.
    std::mt19937 rng(20261203);
    const int min_rounds = kite::test::reduced_run() ? 4 : 12, max_rounds = 64;
    std::size_t left_behind = 0;
    int round = 0;
    for (; round < max_rounds && (round < min_rounds || left_behind == 0); ++round) {
        temp_dir dir;
        const auto t0 = std::chrono::steady_clock::now();
        a.save(0, dir.path());
        const auto save_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
        const auto delay = std::uniform_int_distribution<long long>(0, 2 * std::max<long long>(save_us, 50))(rng);
        kite::test::run_and_kill(
            [&](auto ack) {
                for (int i = 1;; ++i) {
                    a.save(i % 2, dir.path());
                    ack(i);
                }
            },
            1, std::chrono::microseconds(delay));
        INFO("round " << round << ", killed " << delay << " us after the first save (one takes ~" << save_us << " us)");
        for (int f = 0; f < 4; ++f) {
            const std::string got = bytes_of(dir / files[f]);
            INFO(files[f] << ": " << got.size() << " bytes");
            CHECK((got == ref[0][f] || got == ref[1][f]));
        }
        // And each loads.
        CHECK_NOTHROW(kr::read_faiss<kite::metric::l2>(dir / "index.faiss"));
        CHECK_NOTHROW(bm25_t::load(dir / "bm25.idx"));
        CHECK_NOTHROW(kite::quant::load<quant_t>(dir / "w.kq"));
        CHECK_NOTHROW(kr::read_npy<float>(dir / "m.npy"));
        // The killed writer's temporaries go at the next save to the same paths.
        left_behind += temporaries(dir.path());
        a.save(1, dir.path());
        CHECK(temporaries(dir.path()) == 0);
    }
    // At least some rounds must have killed a write in the middle (else this proves little).
    INFO(round << " rounds");
    CHECK(left_behind > 0);
}
