#pragma once
/// @file kite/model/block.hpp
/// transformer_block: one pre-norm decoder block assembled from policies,
///
///   x += o_proj(attention(rope?(q), rope?(k), v; cache, alibi?))   with q|k|v = qkv_proj(norm1(x))
///   x += mlp(norm2(x))
///
/// over a KV cache: prefill runs one sequence's new tokens as a batch (GEMM, causal prefill
/// attention over the cached prefix plus the new keys), decode runs one new token of each of a
/// batch of sequences (GEMV / small GEMM, decode attention). Both write the new keys and values
/// to the cache before attending. The weight format, head layout, attention kernel, norm and MLP
/// are template policies; the position policy is passed in (it is shared by all blocks).

#include <array>
#include <cstring>
#include <span>
#include <vector>

#include "kite/attn.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/tensor.hpp"
#include "kite/kv.hpp"
#include "kite/model/concepts.hpp"
#include "kite/model/layers.hpp"
#include "kite/model/weights.hpp"
#include "kite/pos.hpp"

namespace kite::model {

/// Where a block's linear layers read their inputs; calibration captures each of them.
enum class linear_input : std::uint8_t { qkv = 0, o = 1, up = 2, down = 3 };

/// The inputs of every linear layer seen while running a model on calibration text: per block
/// and per linear_input a [tokens][in_features] matrix (stored flat, rows appended), plus the
/// inputs of the classifier. GPTQ and AWQ quantize each layer against these activations.
struct activation_capture {
    std::vector<std::array<std::vector<float>, 4>> blocks;  // [layer][linear_input] -> rows
    std::vector<float> head;                                 // rows of the final norm output

    /// Appends the rows of x to a capture buffer.
    static void append(std::vector<float>& dst, matrix_view<const float> x) {
        for (index_t t = 0; t < x.rows(); ++t) dst.insert(dst.end(), x.row(t).begin(), x.row(t).end());
    }
    /// The captured rows of `buf` as [tokens][cols].
    static matrix_view<const float> rows(const std::vector<float>& buf, index_t cols) noexcept {
        return {buf.data(), cols ? buf.size() / cols : 0, cols};
    }
};

/// Scratch of a block's forward pass (one per calling thread; buffers keep their capacity).
struct block_workspace {
    matrix<float> h;                   // [tokens][hidden] normalised input
    matrix<float> qkv;                 // [tokens][q_dim + 2 kv_dim]
    matrix<float> att;                 // [tokens][q_dim] attention output
    matrix<float> proj;                // [tokens][hidden] projection back to the residual
    matrix<float> ffn;                 // [tokens][up outputs] MLP hidden
    std::vector<index_t> positions;    // [tokens]
    activation_capture* capture = nullptr;  // non-null while collecting calibration inputs
};

/// One sequence's slice of a ragged batch: rows [row, row + n) of the residual stream are the
/// tokens at positions [pos0, pos0 + n) of sequence `seq`.
struct ragged_part {
    kv::seq_id seq = 0;
    index_t pos0 = 0;
    index_t n = 0;
    index_t row = 0;
};

/// One decoder block: norms, fused q|k|v and output projections, MLP; weights in `Format`.
template <attn::head_layout Layout, pos::position_encoding Position, attn::attention_kernel Kernel,
          norm_layer Norm, mlp_kind Mlp, class Format>
class transformer_block {
public:
    using format = Format;

    transformer_block() = default;
    /// Assembles a block from its layers; `config` gives the head counts (checked against the
    /// projection shapes).
    transformer_block(const model_config& config, Norm attn_norm, linear<Format> qkv, linear<Format> o, Norm mlp_norm,
                      feed_forward<Mlp, Format> mlp)
        : n_q_(config.num_heads), n_kv_(config.num_kv_heads), head_dim_(config.head_dim),
          attn_norm_(std::move(attn_norm)), qkv_(std::move(qkv)), o_(std::move(o)), mlp_norm_(std::move(mlp_norm)),
          mlp_(std::move(mlp)) {
        const index_t hidden = attn_norm_.dim();
        KITE_REQUIRE(qkv_.in_features() == hidden && qkv_.out_features() == q_dim() + 2 * kv_dim(), shape_error,
                     "transformer_block: qkv projection is [", qkv_.out_features(), "][", qkv_.in_features(),
                     "]; expected [", q_dim() + 2 * kv_dim(), "][", hidden, "]");
        KITE_REQUIRE(o_.in_features() == q_dim() && o_.out_features() == hidden, shape_error,
                     "transformer_block: output projection is [", o_.out_features(), "][", o_.in_features(),
                     "]; expected [", hidden, "][", q_dim(), "]");
        KITE_REQUIRE(mlp_norm_.dim() == hidden && mlp_.dim() == hidden, shape_error,
                     "transformer_block: MLP norm / MLP width ", mlp_norm_.dim(), " / ", mlp_.dim(),
                     "; expected hidden = ", hidden);
    }

    index_t hidden() const noexcept { return attn_norm_.dim(); }
    index_t q_dim() const noexcept { return n_q_ * head_dim_; }
    index_t kv_dim() const noexcept { return n_kv_ * head_dim_; }
    const Norm& attn_norm() const noexcept { return attn_norm_; }
    const Norm& mlp_norm() const noexcept { return mlp_norm_; }
    const linear<Format>& qkv() const noexcept { return qkv_; }
    const linear<Format>& o() const noexcept { return o_; }
    const feed_forward<Mlp, Format>& mlp() const noexcept { return mlp_; }
    /// Bytes of weights one token's pass reads.
    std::size_t weight_bytes() const noexcept { return qkv_.bytes() + o_.bytes() + mlp_.bytes(); }

    /// Prefill: x [n][hidden] holds the residual stream of tokens at positions [pos0, pos0 + n)
    /// of sequence s, whose cache already has room for them (length pos0 + n). Writes their
    /// K/V to `layer` of the cache and updates x in place.
    template <kv::kv_cache Cache>
    void prefill(Cache& cache, index_t layer, kv::seq_id s, index_t pos0, matrix_view<float> x, const Position& position,
                 block_workspace& ws) const {
        const index_t n = x.rows();
        ws.positions.resize(n);
        for (index_t t = 0; t < n; ++t) ws.positions[t] = pos0 + t;
        project_qkv(x, layer, position, ws);
        const index_t ld = ws.qkv.cols();
        cache.write(layer, s, pos0, tensor_view<const float, 3>(ws.qkv.data() + q_dim(), {n, n_kv_, head_dim_}, {ld, head_dim_, 1}),
                    tensor_view<const float, 3>(ws.qkv.data() + q_dim() + kv_dim(), {n, n_kv_, head_dim_}, {ld, head_dim_, 1}));
        ws.att.resize(n, q_dim());
        const kv::seq_id seqs[1] = {s};
        attn::prefill<Layout, Kernel>(
            tensor_view<const float, 4>(ws.qkv.data(), {1, n, n_q_, head_dim_}, {n * ld, ld, head_dim_, 1}),
            cache.view(layer, std::span<const kv::seq_id>(seqs)),
            tensor_view<float, 4>(ws.att.data(), {1, n, n_q_, head_dim_}, {n * q_dim(), q_dim(), head_dim_, 1}),
            options(position, n * (pos0 + n) * kv_dim() * sizeof(typename Cache::value_type)));
        finish(x, layer, ws);
    }

    /// Decode: x [batch][hidden] holds one new token of each sequence in `seqs`, at position
    /// positions[b] (the cache already has room: length positions[b] + 1). Writes their K/V
    /// to `layer` of the cache and updates x in place.
    template <kv::kv_cache Cache>
    void decode(Cache& cache, index_t layer, std::span<const kv::seq_id> seqs, std::span<const index_t> positions,
                matrix_view<float> x, const Position& position, block_workspace& ws) const {
        const index_t batch = x.rows();
        ws.positions.assign(positions.begin(), positions.end());
        project_qkv(x, layer, position, ws);
        o_.prefetch();  // read while attention runs
        const index_t ld = ws.qkv.cols();
        for (index_t b = 0; b < batch; ++b) {
            const float* k = ws.qkv.row(b).data() + q_dim();
            cache.write(layer, seqs[b], positions[b], k, k + kv_dim());
        }
        ws.att.resize(batch, q_dim());
        attn::decode<Layout, Kernel>(tensor_view<const float, 3>(ws.qkv.data(), {batch, n_q_, head_dim_}, {ld, head_dim_, 1}),
                                     cache.view(layer, seqs),
                                     tensor_view<float, 3>(ws.att.data(), {batch, n_q_, head_dim_}, {q_dim(), head_dim_, 1}),
                                     options(position, kv_read_bytes<Cache>(cache, seqs)));
        finish(x, layer, ws);
    }

    /// Ragged: x [rows][hidden] holds the new tokens of several sequences (`parts`, rows in
    /// order), whose cache already has room for them. One projection / MLP GEMM over every row;
    /// attention per part (a prefill call for a part of several tokens, one decode call for each
    /// run of consecutive single-token parts). With a batch-invariant kernel (attn::invariant)
    /// and row-independent weight kernels, each row's result does not depend on the others.
    template <kv::kv_cache Cache>
    void forward(Cache& cache, index_t layer, std::span<const ragged_part> parts, std::span<const kv::seq_id> seqs,
                 std::span<const index_t> positions, matrix_view<float> x, const Position& position,
                 block_workspace& ws) const {
        ws.positions.assign(positions.begin(), positions.end());
        project_qkv(x, layer, position, ws);
        o_.prefetch();
        const index_t ld = ws.qkv.cols();
        for (const ragged_part& p : parts) {
            const float* base = ws.qkv.row(p.row).data();
            cache.write(layer, p.seq, p.pos0, tensor_view<const float, 3>(base + q_dim(), {p.n, n_kv_, head_dim_}, {ld, head_dim_, 1}),
                        tensor_view<const float, 3>(base + q_dim() + kv_dim(), {p.n, n_kv_, head_dim_}, {ld, head_dim_, 1}));
        }
        ws.att.resize(x.rows(), q_dim());
        for (index_t i = 0; i < parts.size();) {
            const ragged_part& p = parts[i];
            if (p.n == 1) {  // a run of single-token parts: one decode call
                index_t j = i + 1;
                while (j < parts.size() && parts[j].n == 1 && parts[j].row == parts[j - 1].row + 1) ++j;
                const index_t batch = j - i;
                const auto run_seqs = seqs.subspan(i, batch);
                attn::decode<Layout, Kernel>(
                    tensor_view<const float, 3>(ws.qkv.row(p.row).data(), {batch, n_q_, head_dim_}, {ld, head_dim_, 1}),
                    cache.view(layer, run_seqs),
                    tensor_view<float, 3>(ws.att.row(p.row).data(), {batch, n_q_, head_dim_}, {q_dim(), head_dim_, 1}),
                    options(position, kv_read_bytes<Cache>(cache, run_seqs)));
                i = j;
                continue;
            }
            attn::prefill<Layout, Kernel>(
                tensor_view<const float, 4>(ws.qkv.row(p.row).data(), {1, p.n, n_q_, head_dim_}, {p.n * ld, ld, head_dim_, 1}),
                cache.view(layer, seqs.subspan(i, 1)),
                tensor_view<float, 4>(ws.att.row(p.row).data(), {1, p.n, n_q_, head_dim_}, {p.n * q_dim(), q_dim(), head_dim_, 1}),
                options(position, p.n * (p.pos0 + p.n) * kv_dim() * sizeof(typename Cache::value_type)));
            ++i;
        }
        finish(x, layer, ws);
    }

private:
    template <class Cache>
    index_t kv_read_bytes(const Cache& cache, std::span<const kv::seq_id> seqs) const {
        index_t tokens = 0;
        for (const kv::seq_id s : seqs) tokens += cache.length(s);
        return 2 * tokens * kv_dim() * sizeof(typename Cache::value_type);
    }

    static void capture(block_workspace& ws, index_t layer, linear_input where, matrix_view<const float> x) {
        if (!ws.capture) return;
        if (ws.capture->blocks.size() <= layer) ws.capture->blocks.resize(layer + 1);
        activation_capture::append(ws.capture->blocks[layer][static_cast<std::size_t>(where)], x);
    }

    // `kv_bytes`: the K/V bytes the call reads; small calls stay on one thread.
    attn::options options(const Position& position, index_t kv_bytes) const noexcept {
        attn::options opt;
        opt.mask = attn::mask::causal;
        if (kv_bytes < (index_t{128} << 10)) opt.threads = 1;
        if constexpr (Position::applies_to == pos::where::score_bias) opt.alibi_slopes = position.slopes();
        return opt;
    }

    // h = norm1(x); qkv = W_qkv h (+ b); RoPE on the query and key heads at ws.positions.
    void project_qkv(matrix_view<float> x, index_t layer, const Position& position, block_workspace& ws) const {
        const index_t n = x.rows();
        qkv_.prefetch();
        ws.h.resize(n, hidden());
        attn_norm_.forward(x, ws.h.view());
        capture(ws, layer, linear_input::qkv, ws.h.view());
        ws.qkv.resize(n, qkv_.out_features());
        qkv_.forward(ws.h.view(), ws.qkv.view());
        if constexpr (Position::applies_to == pos::where::qk) {
            const index_t ld = ws.qkv.cols();
            position.apply(tensor_view<float, 3>(ws.qkv.data(), {n, n_q_, head_dim_}, {ld, head_dim_, 1}), ws.positions);
            position.apply(tensor_view<float, 3>(ws.qkv.data() + q_dim(), {n, n_kv_, head_dim_}, {ld, head_dim_, 1}),
                           ws.positions);
        }
    }

    // x += o(att); x += mlp(norm2(x)).
    void finish(matrix_view<float> x, index_t layer, block_workspace& ws) const {
        const index_t n = x.rows();
        capture(ws, layer, linear_input::o, ws.att.view());
        ws.proj.resize(n, hidden());
        o_.forward(ws.att.view(), ws.proj.view());
        mlp_.up().prefetch();
        add_residual(x, ws.proj.view());
        mlp_norm_.forward(x, ws.h.view());
        capture(ws, layer, linear_input::up, ws.h.view());
        ws.ffn.resize(n, mlp_.up().out_features());
        mlp_.up().forward(ws.h.view(), ws.ffn.view());
        mlp_.down().prefetch();
        const index_t inter = mlp_.intermediate();
        feed_forward<Mlp, Format>::hidden(ws.ffn, n, inter);
        const matrix_view<const float> hid(ws.ffn.data(), n, inter, ws.ffn.cols());
        capture(ws, layer, linear_input::down, hid);
        mlp_.down().forward(hid, ws.proj.view());
        add_residual(x, ws.proj.view());
    }

    index_t n_q_ = 0, n_kv_ = 0, head_dim_ = 0;
    Norm attn_norm_;
    linear<Format> qkv_;  // [q_dim + 2 kv_dim][hidden]
    linear<Format> o_;    // [hidden][q_dim]
    Norm mlp_norm_;
    feed_forward<Mlp, Format> mlp_;
};

}  // namespace kite::model
