// 01_flat_search: exact nearest-neighbour search over your own embeddings.
//
//   kite-flat-search BASE [QUERIES] [K] [--save index.faiss] [--f16] [--threads N]
//
// Builds a kite::retrieval::flat_index (squared L2, as FAISS's IndexFlatL2) from a NumPy .npy
// (float32, C order) or .fvecs file, searches the queries (the first five base vectors when no
// query file is given: each must find itself at distance 0), and prints neighbours and
// timings. A K larger than the number of stored vectors returns them all. --save writes the
// index in FAISS's format: faiss.read_index loads it. --f16 keeps a float16 copy for
// single-query and small-batch search (flat_options::f16_scan: same exact results, about twice
// as fast where memory bandwidth bounds the scan, 1.5x the memory).
#include <kite/core/parallel.hpp>
#include <kite/retrieval/faiss_io.hpp>
#include <kite/retrieval/flat_index.hpp>
#include <kite/retrieval/vector_io.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "cli.hpp"

namespace {
bool vector_file(const std::string& p) { return p.ends_with(".npy") || p.ends_with(".fvecs"); }
}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-flat-search",
                          "Exact nearest-neighbour search (squared L2, as FAISS's IndexFlatL2) over .npy or .fvecs vectors.");
    auto& base_path = cli.positional<std::string>("BASE", "base vectors: .npy (float32, C order) or .fvecs");
    auto& query_arg = cli.positional<std::string>(
        "QUERIES", "query vectors (.npy or .fvecs); without it, the first five base vectors", "");
    auto& k_arg = cli.positional<std::string>("K", "neighbours per query, at least 1", "5");
    auto& save_path = cli.option<std::string>("--save", "FILE", "also write the index in FAISS's format");
    const bool& f16 = cli.flag("--f16", "keep a float16 scan copy (same results, faster single queries)");
    auto& threads = cli.option<int>("--threads", "N", "threads (0: every core)", 0).range(0, 4096);

    return kite::cli::run(cli, argc, argv, [&] {
        // QUERIES is recognised by its extension: "BASE 10" means K = 10 without a query file.
        std::string query_path = *query_arg, k_text = *k_arg;
        if (!query_path.empty() && !vector_file(query_path)) {
            if (k_arg.given() || query_path.find_first_not_of("0123456789+-") != std::string::npos)
                throw kite::cli::usage_error("QUERIES: expected a .npy or .fvecs file, got '" + query_path + "'");
            k_text = query_path;
            query_path.clear();
        }
        if (!vector_file(*base_path))
            throw kite::cli::usage_error("BASE: expected a .npy or .fvecs file, got '" + *base_path + "'");
        const auto k = kite::cli::detail::parse_value<kite::index_t>("K", k_text);
        if (k == 0) throw kite::cli::usage_error("K: expected at least 1, got '" + k_text + "'");
        if (*threads > 0) kite::set_num_threads(*threads);

        using clock = std::chrono::steady_clock;
        const auto ms = [](clock::time_point a, clock::time_point b) {
            return std::chrono::duration<double, std::milli>(b - a).count();
        };

        // 1. Load the vectors and build the index (ids 0, 1, 2, ... in file order).
        auto t0 = clock::now();
        const kite::matrix<float> base = kite::retrieval::read_vectors(*base_path);
        kite::retrieval::flat_index<kite::metric::l2> index(base.cols(), {.f16_scan = f16});
        index.add(base.view());
        auto t1 = clock::now();
        std::printf("index: %zu vectors of dim %zu from %s (%.1f ms to load and add; %.1f MB%s)\n", index.size(),
                    index.dim(), base_path->c_str(), ms(t0, t1), static_cast<double>(index.memory_bytes()) / 1e6,
                    index.f16_scan() ? ", with the float16 scan copy" : "");

        // 2. Queries: a file, or the first five stored vectors.
        const kite::matrix<float> queries =
            query_path.empty() ? kite::matrix<float>(base.view().rows_slice(0, std::min<kite::index_t>(5, base.rows())))
                               : kite::retrieval::read_vectors(query_path);

        // 3. Search. Batches of any size; the kernel (scan or GEMM) is chosen by batch size. The
        //    result has min(k, size()) columns.
        t0 = clock::now();
        const auto r = index.search(queries.view(), k);
        t1 = clock::now();
        std::printf("search: %zu queries, k = %zu, %.3f ms (%.0f queries/s, %d threads)\n\n", queries.rows(),
                    r.labels.cols(), ms(t0, t1), static_cast<double>(queries.rows()) / (ms(t0, t1) / 1e3),
                    kite::max_threads());
        for (kite::index_t q = 0; q < std::min<kite::index_t>(queries.rows(), 5); ++q) {
            std::printf("query %zu:", q);
            for (kite::index_t i = 0; i < std::min<kite::index_t>(r.labels.cols(), 10); ++i)
                std::printf("  %lld (%.4f)", static_cast<long long>(r.labels(q, i)), r.distances(q, i));
            std::printf(r.labels.cols() > 10 ? "  ...\n" : "\n");
        }

        // 4. Exactness check the reader can trust: a stored vector finds itself at distance 0.
        if (query_path.empty() && r.labels.rows() > 0 && (r.labels(0, 0) != 0 || r.distances(0, 0) != 0.f)) {
            std::fprintf(stderr, "kite-flat-search: error: vector 0 did not find itself first\n");
            return 1;
        }

        // 5. Optionally save in FAISS's format (atomic write).
        if (!save_path->empty()) {
            kite::retrieval::write_faiss(index, *save_path);
            std::printf("\nsaved as a FAISS IndexFlatL2: %s\n", save_path->c_str());
        }
        return 0;
    });
}
