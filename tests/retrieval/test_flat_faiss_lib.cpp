// Round trip through FAISS itself (compiled only when libfaiss is found, KITE_TEST_WITH_FAISS_LIB):
// an index written by kite is read by faiss::read_index and answers the same; an index written
// by faiss::write_index is read by kite and answers the same.
#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/index_io.h>

#include <memory>

#include "flat_test_util.hpp"
#include "kite/retrieval/faiss_io.hpp"

namespace {

using kite::index_t;
namespace kr = kite::retrieval;
namespace kt = kite::test::flat;
using faiss_id = decltype(faiss::Index::ntotal);  // faiss::idx_t; Index::idx_t before FAISS 1.7.4

// Same results up to the order inside groups of equal scores (FAISS does not order ties by id).
void check_same(const kr::search_result& kite_r, const std::vector<float>& D, const std::vector<faiss_id>& I,
                index_t nq, index_t k) {
    for (index_t q = 0; q < nq; ++q)
        for (index_t i = 0; i < k; ++i) {
            INFO("query " << q << " rank " << i);
            CHECK(kite_r.distances(q, i) == Approx(D[q * k + i]).epsilon(1e-5).margin(1e-4));
            if (kite_r.labels(q, i) != I[q * k + i]) {
                const bool tie = (i > 0 && D[q * k + i - 1] == D[q * k + i]) ||
                                 (i + 1 < k && D[q * k + i + 1] == D[q * k + i]);
                CHECK(tie);
            }
        }
}

template <class Metric>
void round_trip(bool with_ids) {
    const index_t d = 40, n = 500, nq = 9, k = 8;
    const auto x = kt::make_data(kt::data_kind::random, n, d, 51);
    const auto q = kt::make_data(kt::data_kind::random, nq, d, 52);
    kite::test::temp_dir tmp;
    std::vector<float> D(nq * k);
    std::vector<faiss_id> I(nq * k);

    // kite -> FAISS
    kr::flat_index<Metric> index(d);
    if (with_ids) {
        std::vector<kite::id_t> ids(n);
        for (index_t i = 0; i < n; ++i) ids[i] = 77 + 5 * static_cast<kite::id_t>(n - i);
        index.add_with_ids(x.view(), ids);
    } else {
        index.add(x.view());
    }
    kr::write_faiss(index, tmp / "kite.faiss");
    std::unique_ptr<faiss::Index> f(faiss::read_index((tmp / "kite.faiss").c_str()));
    REQUIRE(f->ntotal == static_cast<faiss_id>(n));
    REQUIRE(f->d == static_cast<int>(d));
    CHECK(f->metric_type == (Metric::faiss_metric == 1 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT));
    f->search(static_cast<faiss_id>(nq), q.data(), static_cast<faiss_id>(k), D.data(), I.data());
    const auto r = index.search(q.view(), k);
    check_same(r, D, I, nq, k);

    // FAISS -> kite
    faiss::write_index(f.get(), (tmp / "faiss.faiss").c_str());
    const auto back = kr::read_faiss<Metric>(tmp / "faiss.faiss");
    CHECK(std::equal(back.ids().begin(), back.ids().end(), index.ids().begin(), index.ids().end()));
    check_same(back.search(q.view(), k), D, I, nq, k);
}

}  // namespace

TEST_CASE("FAISS reads what kite writes and kite reads what FAISS writes", "[retrieval][flat][faiss]") {
    round_trip<kite::metric::l2>(false);
    round_trip<kite::metric::inner_product>(false);
    round_trip<kite::metric::l2>(true);
    round_trip<kite::metric::inner_product>(true);
}
