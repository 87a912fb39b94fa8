// Agreement with PyTorch's scaled_dot_product_attention (causal, padding, GQA/MQA, ALiBi from
// BLOOM's build_alibi_tensor, custom scale, decode, chunked prefill) for both kernels.
#include "../pos/fixture_io.hpp"
#include "attn_test_util.hpp"
#include "kite/pos/alibi.hpp"

using namespace kite;

namespace {

template <class Kernel>
void run_case(const kite::test::fixture_case& c) {
    INFO("case " << c.name << " kernel " << Kernel::name);
    const index_t batch = c.size("batch"), q_seq = c.size("q_seq"), kv_seq = c.size("kv_seq");
    const index_t n_q = c.size("heads"), n_kv = c.size("kv_heads"), d = c.size("dim");
    const std::uint64_t seed = c.size("seed");
    auto q = kite::test::lcg_floats(batch * q_seq * n_q * d, seed);
    for (auto& x : q) x *= 2.0f;
    const auto k = kite::test::lcg_floats(batch * kv_seq * n_kv * d, seed + 1);
    const auto v = kite::test::lcg_floats(batch * kv_seq * n_kv * d, seed + 2);
    const auto q_lens = c.indices("q_lens"), kv_lens = c.indices("kv_lens");
    const auto slopes = pos::alibi_slopes(n_q);
    attn::options opt;
    opt.mask = c.size("causal") ? attn::mask::causal : attn::mask::bidirectional;
    opt.scale = static_cast<float>(c.num("scale"));
    if (c.size("alibi")) opt.alibi_slopes = slopes;
    const attn::tensor_kv<float> kv(tensor_view<const float, 4>(k.data(), {batch, kv_seq, n_kv, d}),
                                    tensor_view<const float, 4>(v.data(), {batch, kv_seq, n_kv, d}), kv_lens);
    const auto want = c.floats("out");
    std::vector<float> o(want.size(), 777.0f);
    Kernel::template prefill<attn::gqa>(tensor_view<const float, 4>(q.data(), {batch, q_seq, n_q, d}), kv,
                                        tensor_view<float, 4>(o.data(), {batch, q_seq, n_q, d}), opt, q_lens);
    CHECK(kite::test::max_abs_diff(o, want) <= 1e-5);
    if (q_seq == 1) {  // the decode entry point on the same problem
        std::vector<float> od(want.size(), 777.0f);
        Kernel::template decode<attn::gqa>(tensor_view<const float, 3>(q.data(), {batch, n_q, d}), kv,
                                           tensor_view<float, 3>(od.data(), {batch, n_q, d}), opt);
        CHECK(kite::test::max_abs_diff(od, want) <= 1e-5);
    }
}

}  // namespace

TEST_CASE("attention matches PyTorch scaled_dot_product_attention", "[attn][fixture]") {
    const auto cases = kite::test::load_cases("attn/sdpa.txt");
    REQUIRE(cases.size() == 9);
    for (const auto& c : cases) {
        run_case<attn::reference>(c);
        run_case<attn::flash<64, 64>>(c);
        run_case<attn::flash<16, 8>>(c);
    }
}
