#pragma once
/// @file kite/train/checkpoint.hpp
/// Saves a BERT checkpoint as a Hugging Face / sentence-transformers model folder that
/// model::read_bert, sentence_encoder::load and transformers read back:
///
///   train::save_bert(out_dir, m.to_checkpoint(), original_dir);
///
/// model.safetensors holds the float32 tensors under BertModel's names (query, key and value
/// unfused); every other file of `original_dir` (config.json, the tokenizer, the pooling
/// configuration) is copied unchanged, but for config.json's num_hidden_layers where `ck` has
/// another number of layers (a distilled student). The folder appears whole or not at all: it is written
/// under a temporary name next to `out_dir` and renamed into place; an existing `out_dir` is
/// replaced only when `overwrite` is set.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/classifier_head.hpp"
#include "kite/model/encoder.hpp"

namespace kite::train {

namespace detail {

// One tensor to write: its name, shape and float32 values.
struct st_tensor {
    std::string name;
    std::vector<std::uint64_t> shape;
    const float* data = nullptr;
    std::size_t count = 0;
};

// model.safetensors: 8-byte little-endian header length, the JSON header (padded with spaces
// to a multiple of 8 bytes), then the tensors back to back.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<st_tensor>& tensors) {
    nlohmann::json header = nlohmann::json::object();
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        const std::uint64_t bytes = static_cast<std::uint64_t>(t.count) * sizeof(float);
        header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    header["__metadata__"] = {{"format", "pt"}};
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    io::atomic_file out(path);
    const std::uint64_t n = text.size();
    unsigned char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(n >> (8 * i));
    out.write(le, 8);
    out.write(text.data(), text.size());
    for (const auto& t : tensors) out.write(t.data, t.count * sizeof(float));
    out.commit();
}

inline st_tensor st_matrix(std::string name, const matrix<float>& m, index_t row0 = 0, index_t rows = 0) {
    if (rows == 0) rows = m.rows() - row0;
    return {std::move(name), {static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(m.cols())},
            m.data() + static_cast<std::size_t>(row0) * m.cols(), static_cast<std::size_t>(rows) * m.cols()};
}
inline st_tensor st_vector(std::string name, const std::vector<float>& v, std::size_t first = 0, std::size_t count = 0) {
    if (count == 0) count = v.size() - first;
    return {std::move(name), {count}, v.data() + first, count};
}

// config.json as it was, or with num_hidden_layers set to `layers` where that differs (a
// distilled student keeps fewer layers than the model it came from), and for a cross-encoder
// (`classifier`) BertForSequenceClassification with one label.
inline void write_config(const std::filesystem::path& from, const std::filesystem::path& to, std::size_t layers,
                         bool classifier = false) {
    const std::string text = io::read_text(from);
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    KITE_REQUIRE(j.is_object(), format_error, "train::save_bert: '", from.string(), "' is not a JSON object");
    const auto it = j.find("num_hidden_layers");
    if (!classifier && it != j.end() && it->is_number_unsigned() && it->get<std::size_t>() == layers) {
        std::filesystem::copy_file(from, to);
        return;
    }
    j["num_hidden_layers"] = layers;
    if (classifier) {
        j["architectures"] = {"BertForSequenceClassification"};
        j["id2label"] = {{"0", "LABEL_0"}};
        j["label2id"] = {{"LABEL_0", 0}};
    }
    const std::string out_text = j.dump(2) + "\n";
    io::atomic_file out(to);
    out.write(out_text.data(), out_text.size());
    out.commit();
}

}  // namespace detail

/// Writes `ck` to `out_dir` as a model folder (see the file comment). kite::io_error when a
/// file cannot be written or `out_dir` exists without `overwrite`; kite::invalid_argument when
/// `original_dir` has no config.json or `ck` is not a BERT checkpoint with fused q/k/v.
/// With `head` it is a BertForSequenceClassification (a cross-encoder): the encoder's tensors
/// are named `bert.*`, the pooler and classifier join them, and config.json says so
/// (train::save_cross_encoder).
inline void save_bert(const std::filesystem::path& out_dir, const model::bert_checkpoint& ck,
                      const std::filesystem::path& original_dir, bool overwrite = false,
                      const model::classifier_head* head = nullptr) {
    namespace fs = std::filesystem;
    const index_t h = ck.config.hidden_size;
    KITE_REQUIRE(fs::is_regular_file(original_dir / "config.json"), invalid_argument, "train::save_bert: '",
                 original_dir.string(), "' has no config.json; expected the folder the model was read from");
    KITE_REQUIRE(overwrite || !fs::exists(out_dir), io_error, "train::save_bert: '", out_dir.string(),
                 "' exists; expected a new folder (or overwrite)");
    std::vector<detail::st_tensor> ts;
    ts.push_back(detail::st_matrix("embeddings.word_embeddings.weight", ck.word_embeddings));
    ts.push_back(detail::st_matrix("embeddings.position_embeddings.weight", ck.position_embeddings));
    ts.push_back(detail::st_matrix("embeddings.token_type_embeddings.weight", ck.token_type_embeddings));
    ts.push_back(detail::st_vector("embeddings.LayerNorm.weight", ck.embedding_norm_weight));
    ts.push_back(detail::st_vector("embeddings.LayerNorm.bias", ck.embedding_norm_bias));
    std::vector<float> classifier_bias;
    if (head != nullptr) {
        KITE_REQUIRE(head->pooler.rows() == h && head->pooler.cols() == h && head->pooler_bias.size() == h &&
                         head->weight.size() == h,
                     invalid_argument, "train::save_bert: a classifier head for ", head->pooler.rows(), " states; expected ", h);
        for (auto& t : ts) t.name = "bert." + t.name;
        classifier_bias = {head->bias};
    }
    for (std::size_t l = 0; l < ck.layers.size(); ++l) {
        const auto& L = ck.layers[l];
        KITE_REQUIRE(L.qkv.rows() == 3 * h && L.qkv_bias.size() == 3 * h, invalid_argument, "train::save_bert: layer ",
                     l, " has ", L.qkv.rows(), " fused q/k/v rows; expected ", 3 * h);
        const std::string p = std::string(head != nullptr ? "bert." : "") + "encoder.layer." + std::to_string(l) + ".";
        const char* qkv[] = {"query", "key", "value"};
        for (index_t k = 0; k < 3; ++k) {
            ts.push_back(detail::st_matrix(p + "attention.self." + qkv[k] + ".weight", L.qkv, k * h, h));
            ts.push_back(detail::st_vector(p + "attention.self." + qkv[k] + ".bias", L.qkv_bias, k * h, h));
        }
        ts.push_back(detail::st_matrix(p + "attention.output.dense.weight", L.o));
        ts.push_back(detail::st_vector(p + "attention.output.dense.bias", L.o_bias));
        ts.push_back(detail::st_vector(p + "attention.output.LayerNorm.weight", L.attn_norm_weight));
        ts.push_back(detail::st_vector(p + "attention.output.LayerNorm.bias", L.attn_norm_bias));
        ts.push_back(detail::st_matrix(p + "intermediate.dense.weight", L.up));
        ts.push_back(detail::st_vector(p + "intermediate.dense.bias", L.up_bias));
        ts.push_back(detail::st_matrix(p + "output.dense.weight", L.down));
        ts.push_back(detail::st_vector(p + "output.dense.bias", L.down_bias));
        ts.push_back(detail::st_vector(p + "output.LayerNorm.weight", L.mlp_norm_weight));
        ts.push_back(detail::st_vector(p + "output.LayerNorm.bias", L.mlp_norm_bias));
    }
    if (head != nullptr) {
        ts.push_back(detail::st_matrix("bert.pooler.dense.weight", head->pooler));
        ts.push_back(detail::st_vector("bert.pooler.dense.bias", head->pooler_bias));
        ts.push_back({"classifier.weight", {1, static_cast<std::uint64_t>(h)}, head->weight.data(), head->weight.size()});
        ts.push_back(detail::st_vector("classifier.bias", classifier_bias));
    }

    const fs::path parent = out_dir.has_parent_path() ? out_dir.parent_path() : fs::path(".");
    const fs::path tmp = parent / (out_dir.filename().string() + ".tmp-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::remove_all(tmp, ec);
    try {
        fs::create_directories(tmp);
        // Everything but the weights, as it was.
        for (const auto& e : fs::directory_iterator(original_dir)) {
            const std::string name = e.path().filename().string();
            if (name == "model.safetensors" || name == "pytorch_model.bin" || name == "tf_model.h5" ||
                name == "rust_model.ot" || name == "onnx" || name == "openvino")
                continue;
            if (name == "config.json")
                detail::write_config(e.path(), tmp / name, ck.layers.size(), head != nullptr);
            else
                fs::copy(e.path(), tmp / name, fs::copy_options::recursive);
        }
        detail::write_safetensors(tmp / "model.safetensors", ts);
        if (fs::exists(out_dir)) fs::remove_all(out_dir);
        fs::rename(tmp, out_dir);
    } catch (const fs::filesystem_error& e) {
        fs::remove_all(tmp, ec);
        kite::detail::raise<io_error>("train::save_bert: cannot write '", out_dir.string(), "': ", e.what());
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
}

}  // namespace kite::train
