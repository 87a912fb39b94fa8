// 01_flat_search: exact nearest-neighbour search over your own embeddings.
//
//   kite-flat-search <base.npy|base.fvecs> [queries.npy|queries.fvecs] [k] [--save index.faiss] [--f16]
//
// Builds a kite::retrieval::flat_index (squared L2, as FAISS's IndexFlatL2) from a NumPy .npy
// (float32, C order) or .fvecs file, searches the queries (the first five base vectors when no
// query file is given: each must find itself at distance 0), and prints neighbours and
// timings. --save writes the index in FAISS's format: faiss.read_index loads it. --f16 keeps a
// float16 copy for single-query and small-batch search (flat_options::f16_scan: same exact
// results, about twice as fast where memory bandwidth bounds the scan, 1.5x the memory).
#include <kite/retrieval/faiss_io.hpp>
#include <kite/retrieval/flat_index.hpp>
#include <kite/retrieval/vector_io.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
    std::string base_path, query_path, save_path;
    kite::index_t k = 5;
    bool f16 = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--f16") {
            f16 = true;
        } else if (a == "--save" && i + 1 < argc) {
            save_path = argv[++i];
        } else if (base_path.empty()) {
            base_path = a;
        } else if (query_path.empty() && (a.ends_with(".npy") || a.ends_with(".fvecs"))) {
            query_path = a;
        } else {
            k = static_cast<kite::index_t>(std::strtoul(a.c_str(), nullptr, 10));
        }
    }
    if (base_path.empty()) {
        std::fprintf(stderr, "usage: %s <base.npy|base.fvecs> [queries.npy|.fvecs] [k] [--save index.faiss] [--f16]\n", argv[0]);
        return 2;
    }
    using clock = std::chrono::steady_clock;
    const auto ms = [](clock::time_point a, clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    };

    try {
        // 1. Load the vectors and build the index (ids 0, 1, 2, ... in file order).
        auto t0 = clock::now();
        const kite::matrix<float> base = kite::retrieval::read_vectors(base_path);
        kite::retrieval::flat_index<kite::metric::l2> index(base.cols(), {.f16_scan = f16});
        index.add(base.view());
        auto t1 = clock::now();
        std::printf("index: %zu vectors of dim %zu from %s (%.1f ms to load and add; %.1f MB%s)\n", index.size(),
                    index.dim(), base_path.c_str(), ms(t0, t1), static_cast<double>(index.memory_bytes()) / 1e6,
                    index.f16_scan() ? ", with the float16 scan copy" : "");

        // 2. Queries: a file, or the first five stored vectors.
        const kite::matrix<float> queries = query_path.empty()
                                                ? kite::matrix<float>(base.view().rows_slice(0, std::min<kite::index_t>(5, base.rows())))
                                                : kite::retrieval::read_vectors(query_path);

        // 3. Search. Batches of any size; the kernel (scan or GEMM) is chosen by batch size.
        t0 = clock::now();
        const auto r = index.search(queries.view(), k);
        t1 = clock::now();
        std::printf("search: %zu queries, k = %zu, %.3f ms (%.0f queries/s, %d threads)\n\n", queries.rows(), k,
                    ms(t0, t1), static_cast<double>(queries.rows()) / (ms(t0, t1) / 1e3), kite::max_threads());
        for (kite::index_t q = 0; q < std::min<kite::index_t>(queries.rows(), 5); ++q) {
            std::printf("query %zu:", q);
            for (kite::index_t i = 0; i < k; ++i) std::printf("  %lld (%.4f)", static_cast<long long>(r.labels(q, i)), r.distances(q, i));
            std::printf("\n");
        }

        // 4. Exactness check the reader can trust: a stored vector finds itself at distance 0.
        if (query_path.empty() && r.labels.rows() > 0 && (r.labels(0, 0) != 0 || r.distances(0, 0) != 0.f)) {
            std::fprintf(stderr, "error: vector 0 did not find itself first\n");
            return 1;
        }

        // 5. Optionally save in FAISS's format (atomic write).
        if (!save_path.empty()) {
            kite::retrieval::write_faiss(index, save_path);
            std::printf("\nsaved as a FAISS IndexFlatL2: %s\n", save_path.c_str());
        }
    } catch (const kite::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
