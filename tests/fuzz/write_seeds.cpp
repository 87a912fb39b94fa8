// kite_fuzz_write_seeds OUT_DIR: writes the seeds of the fuzz targets whose inputs only kite
// itself can produce (saved BM25 indexes, quantized weight files) into OUT_DIR/<target>/, in
// the form those harnesses take: the BM25 container's payload (fuzz_bm25 adds the header) and
// the weight file without its trailing CRC (fuzz_quant appends it). Run by make_seeds.sh.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/half.hpp"
#include "kite/core/matrix.hpp"
#include "kite/quant/awq.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/quantize.hpp"
#include "kite/quant/rtn.hpp"
#include "kite/quant/serialize.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/bm25_variants.hpp"
#include "kite/text/pretokenized.hpp"

namespace fs = std::filesystem;
namespace q = kite::quant;

namespace {

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size()));
}

kite::matrix<float> weights(kite::index_t rows, kite::index_t cols) {
    kite::matrix<float> w(rows, cols);
    for (kite::index_t r = 0; r < rows; ++r)
        for (kite::index_t c = 0; c < cols; ++c) w(r, c) = static_cast<float>((r * 31 + c * 7) % 17) / 8.0f - 1.0f;
    return w;
}

template <class Method>
void quant_seed(const fs::path& out, const std::string& name, kite::index_t rows, kite::index_t cols) {
    const auto w = weights(rows, cols);
    const auto p = q::quantize(Method{}, kite::matrix_view<const float>(w.data(), rows, cols));
    const fs::path tmp = out / ("tmp_" + name);
    q::save(tmp, p);
    const std::string bytes = read_all(tmp);
    fs::remove(tmp);
    write_all(out / "quant" / name, bytes.substr(0, bytes.size() - 4));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    const fs::path out = argv[1];
    fs::create_directories(out);

    using index_type = kite::retrieval::bm25_index<kite::bm25::lucene, kite::text::pretokenized>;
    const std::vector<std::vector<std::uint32_t>> docs = {
        {0, 1, 2, 3}, {1, 1, 4}, {5, 6, 7, 8, 9, 0}, {2, 2, 2, 10}, {11}, {3, 12, 13, 1}};
    for (const std::size_t n : {std::size_t{2}, docs.size()}) {
        index_type ix;
        for (std::size_t i = 0; i < n; ++i) ix.add(std::span<const std::uint32_t>(docs[i]));
        if (n == docs.size()) ix.remove(1);
        const fs::path tmp = out / "tmp.kbm25";
        ix.save(tmp);
        const std::string bytes = read_all(tmp);
        fs::remove(tmp);
        write_all(out / "bm25" / ("lucene_" + std::to_string(n) + "_docs"), bytes.substr(24));
    }

    // The formats fuzz_quant loads: packed_weights<4, 32, symmetric>, <4, 64, asymmetric, fp16>,
    // <8, per_row, symmetric>, <4, per_tensor, asymmetric>, and AWQ on <4, 128, asymmetric, fp16>.
    quant_seed<q::absmax<4, 32>>(out, "w4_g32_sym", 3, 70);
    quant_seed<q::zero_point<4, 64, kite::fp16>>(out, "w4_g64_asym_fp16", 2, 130);
    quant_seed<q::absmax<8, q::per_row>>(out, "w8_row_sym", 2, 20);
    quant_seed<q::zero_point<4, q::per_tensor>>(out, "w4_tensor_asym", 5, 9);
    {
        using P = q::packed_weights<4, 128, q::grid::asymmetric, kite::fp16>;
        const auto w = weights(2, 256);
        P p = q::quantize(q::zero_point<4, 128, kite::fp16>{}, kite::matrix_view<const float>(w.data(), 2, 256));
        kite::aligned_buffer<float> s(256);
        for (std::size_t i = 0; i < s.size(); ++i) s[i] = 1.0f + static_cast<float>(i % 5) / 4.0f;
        const q::awq_weights<P> a(std::move(p), std::move(s), 0.5);
        const fs::path tmp = out / "tmp_awq";
        q::save(tmp, a);
        const std::string bytes = read_all(tmp);
        fs::remove(tmp);
        write_all(out / "quant" / "awq_w4_g128", bytes.substr(0, bytes.size() - 4));
    }
    std::printf("kite_fuzz_write_seeds: wrote bm25 and quant seeds to %s\n", out.string().c_str());
    return 0;
}
