#pragma once
// The train tests' shared parts: the tiny BERT fixture, float64 fixture files, and a comparison
// of train::bert_model gradients with PyTorch autograd's (tools/train_make_fixtures.py):
// each of PyTorch's tensors (named as BertModel's, with or without "bert."; query, key and value
// are row blocks of kite's fused qkv) against the same values of kite's gradient buffer, each
// relative to the tensor's largest gradient entry, or to 1% of the largest of all where that is
// more: the key biases' gradient is zero in exact arithmetic (softmax ignores a constant added
// to a query's every score), so only rounding noise is left to compare there.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/formats/bert_loader.hpp"
#include "kite/train/bert.hpp"
#include "kite_test.hpp"

namespace kite::test {

/// tests/fixtures/model/bert_tiny: a 2-layer BERT of hidden size 32 (vocabulary 99).
inline const model::bert_checkpoint& tiny() {
    static const model::bert_checkpoint c = model::read_bert(fixture("model/bert_tiny"));
    return c;
}

/// d(loss)/dx by central differences with step 1e-5, x restored afterwards.
template <class Loss>
double central_difference(double& x, Loss&& loss) {
    const double keep = x, h = 1e-5;
    x = keep + h;
    const double up = loss();
    x = keep - h;
    const double down = loss();
    x = keep;
    return (up - down) / (2 * h);
}

/// A fixture's float64 values (little-endian, as numpy's tofile writes them on x86).
inline std::vector<double> read_f64(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    REQUIRE(in);
    std::vector<double> v(static_cast<std::size_t>(in.tellg()) / sizeof(double));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(double)));
    REQUIRE(in);
    return v;
}

struct autograd_comparison {
    double worst = 0;           ///< largest relative error over the tensors (NaN sticks)
    std::size_t compared = 0;   ///< gradient values compared
};

/// `tensors`: {name: {"shape": [...], "offset": k}} into `ref` (float64 values).
template <class T>
autograd_comparison compare_autograd(const train::bert_model<T>& m, std::span<const T> g, const nlohmann::json& tensors,
                                     const std::vector<double>& ref) {
    const index_t d = m.config().hidden_size;
    running_max global_max;
    for (const auto& [name, info] : tensors.items()) {
        std::size_t count = 1;
        for (const auto& s : info["shape"]) count *= s.template get<std::size_t>();
        for (std::size_t k = 0; k < count; ++k) global_max.add(std::abs(ref[info["offset"].template get<std::size_t>() + k]));
    }
    running_max worst;
    autograd_comparison out;
    for (const auto& [name, info] : tensors.items()) {
        std::string kname = name.rfind("bert.", 0) == 0 ? name.substr(5) : name;
        index_t row0 = 0;
        const char* parts[] = {"query", "key", "value"};
        for (index_t k = 0; k < 3; ++k) {
            const std::string from = std::string(".attention.self.") + parts[k] + ".";
            if (const auto pos = kname.find(from); pos != std::string::npos) {
                kname.replace(pos, from.size(), ".attention.self.qkv.");
                row0 = k * d;
            }
        }
        const auto it = std::find_if(m.tensors().begin(), m.tensors().end(), [&](const auto& t) { return t.name == kname; });
        INFO(name);
        REQUIRE(it != m.tensors().end());
        const auto shape = info["shape"].template get<std::vector<std::size_t>>();
        const std::size_t rows = shape[0], cols = shape.size() == 2 ? shape[1] : 1, offset = info["offset"];
        running_max largest_max, diff_max;
        for (std::size_t r0 = 0; r0 < rows; ++r0)
            for (std::size_t c = 0; c < cols; ++c) {
                const std::size_t p = shape.size() == 2 ? it->offset + (row0 + r0) * it->cols + c : it->offset + row0 + r0;
                const double want = ref[offset + r0 * cols + c];
                largest_max.add(std::abs(want));
                diff_max.add(std::abs(double(g[p]) - want));  // a NaN gradient sticks
                ++out.compared;
            }
        const double largest = largest_max.value(), floor = 0.01 * global_max.value();
        worst.add(diff_max.value() / (std::isnan(largest) || largest > floor ? largest : floor));
    }
    out.worst = worst.value();
    return out;
}

}  // namespace kite::test
