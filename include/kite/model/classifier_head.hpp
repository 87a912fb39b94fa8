#pragma once
/// @file kite/model/classifier_head.hpp
/// model::classifier_head, BertForSequenceClassification's head with one output (a
/// cross-encoder's relevance logit on BERT's [CLS] state), and read_classifier_head. Used by
/// model::cross_encoder (kite/model/cross_encoder.hpp) and train::bert_model.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/formats/load.hpp"
#include "kite/model/formats/safetensors.hpp"

namespace kite::model {

/// BertForSequenceClassification's head with one output: logit = w . tanh(P cls + p) + b.
struct classifier_head {
    matrix<float> pooler;            ///< P [hidden][hidden]
    std::vector<float> pooler_bias;  ///< p [hidden]
    std::vector<float> weight;       ///< w [hidden]
    float bias = 0;                  ///< b

    index_t hidden() const noexcept { return pooler.rows(); }
    classifier_head clone() const { return {pooler.clone(), pooler_bias, weight, bias}; }

    /// The logit of one [CLS] state (in double: 384 x 384 per pair is nothing beside the encoder).
    float operator()(std::span<const float> cls) const {
        const index_t h = hidden();
        KITE_REQUIRE(cls.size() == h, shape_error, "classifier_head: a state of ", cls.size(), " values; expected ", h);
        double logit = bias;
        for (index_t i = 0; i < h; ++i) {
            double a = pooler_bias[i];
            const float* row = pooler.row(i).data();
            for (index_t j = 0; j < h; ++j) a += static_cast<double>(row[j]) * cls[j];
            logit += static_cast<double>(weight[i]) * std::tanh(a);
        }
        return static_cast<float>(logit);
    }
};

namespace detail {
inline void require_finite_head(const classifier_head& hd, const std::string& where) {
    const auto all_finite = [](std::span<const float> v) {
        for (const float x : v)
            if (!std::isfinite(x)) return false;
        return true;
    };
    KITE_REQUIRE(all_finite(hd.pooler.flat()) && all_finite(hd.pooler_bias) && all_finite(hd.weight) &&
                     std::isfinite(hd.bias),
                 format_error, "classifier head of ", where, ": a non-finite weight; expected finite values");
}
}  // namespace detail

/// The head of a BertForSequenceClassification checkpoint (`path`: its folder or .safetensors).
/// kite::not_found_error naming the tensor when pooler.dense.* or classifier.* is missing;
/// kite::shape_error unless the classifier has exactly one output.
inline classifier_head read_classifier_head(const std::filesystem::path& path, index_t hidden) {
    const safetensors_weights w(path);
    const detail::tensor_source src(w, {"bert."});
    classifier_head hd;
    hd.pooler = src.mat("pooler.dense.weight", hidden, hidden);
    hd.pooler_bias = src.vec("pooler.dense.bias", hidden);
    const matrix<float> cw = src.mat("classifier.weight", 1, hidden);
    hd.weight.assign(cw.flat().begin(), cw.flat().end());
    hd.bias = src.vec("classifier.bias", 1)[0];
    detail::require_finite_head(hd, path.string());
    return hd;
}

/// A head to start training a cross-encoder from a BERT encoder's folder: its pooler when it has
/// one (BertModel checkpoints such as all-MiniLM-L6-v2 do), else P ~ N(0, 0.02^2) and p = 0; the
/// classifier w ~ N(0, 0.02^2), b = 0 (transformers' initializer_range), drawn from `seed`. A
/// cross-encoder's folder (pooler and classifier present) gives its own head: training goes on
/// from it.
inline classifier_head new_classifier_head(const std::filesystem::path& path, index_t hidden, std::uint64_t seed = 42) {
    const safetensors_weights w(path);
    const detail::tensor_source src(w, {"bert."});
    if (src.has("pooler.dense.weight") && src.has("classifier.weight") && src.has("classifier.bias"))
        return read_classifier_head(path, hidden);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    classifier_head hd;
    if (src.has("pooler.dense.weight") && src.has("pooler.dense.bias")) {
        hd.pooler = src.mat("pooler.dense.weight", hidden, hidden);
        hd.pooler_bias = src.vec("pooler.dense.bias", hidden);
    } else {
        hd.pooler = matrix<float>(hidden, hidden);
        for (float& v : hd.pooler.flat()) v = normal(rng);
        hd.pooler_bias.assign(hidden, 0.0f);
    }
    hd.weight.resize(hidden);
    for (float& v : hd.weight) v = normal(rng);
    detail::require_finite_head(hd, path.string());
    return hd;
}

}  // namespace kite::model
