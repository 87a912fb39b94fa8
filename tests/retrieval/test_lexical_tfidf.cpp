// Bag of words, TF-IDF and one-hot against scikit-learn (same tokens), and cosine search
// against its double-precision oracle.
#include <kite/core/io.hpp>
#include <kite/retrieval/one_hot.hpp>
#include <kite/retrieval/tfidf.hpp>

#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kite_test.hpp"

using kite::retrieval::count_vectorizer;
using kite::retrieval::sparse_vector;
using kite::retrieval::tfidf_index;
using kite::retrieval::tfidf_vectorizer;
using kite::text::pretokenized;
using ids = std::vector<std::uint32_t>;

namespace {
nlohmann::json fixture_json() {
    return nlohmann::json::parse(kite::io::read_text(kite::test::fixture("retrieval/lexical/sklearn_vectors.json")));
}
std::vector<std::span<const std::uint32_t>> spans(const std::vector<ids>& v) { return {v.begin(), v.end()}; }

/// Token id -> value of a kite row (features are numeric token order for token ids).
template <class V>
std::map<std::uint32_t, double> by_token(const V& vec, const sparse_vector& v) {
    std::map<std::uint32_t, double> m;
    for (std::size_t i = 0; i < v.nnz(); ++i) {
        std::uint32_t id;
        std::memcpy(&id, vec.feature_name(v.indices[i]).data(), 4);
        m[id] = v.values[i];
    }
    return m;
}
std::map<std::uint32_t, double> expected_row(const nlohmann::json& row) {
    std::map<std::uint32_t, double> m;
    for (const auto& kv : row) m[kv[0].get<std::uint32_t>()] = kv[1].get<double>();
    return m;
}
void require_same(const std::map<std::uint32_t, double>& got, const std::map<std::uint32_t, double>& want) {
    REQUIRE(got.size() == want.size());
    std::vector<double> a, b;
    for (const auto& [id, v] : want) {
        INFO("token " << id);
        REQUIRE(got.count(id) == 1);
        a.push_back(got.at(id));
        b.push_back(v);
    }
    CHECK(kite::test::max_rel_diff(a, b, 1.0) <= 1e-5);
}
}  // namespace

TEST_CASE("count_vectorizer matches CountVectorizer", "[lexical][tfidf]") {
    const auto j = fixture_json();
    const auto docs = j["docs"].get<std::vector<ids>>();
    count_vectorizer<pretokenized> cv;
    const auto rows = cv.fit_transform(spans(docs));
    REQUIRE(rows.size() == docs.size());
    for (std::size_t d = 0; d < docs.size(); ++d) require_same(by_token(cv, rows[d]), expected_row(j["counts"][d]));
    // Features are in numeric token order, strictly increasing within a row.
    for (std::uint32_t f = 1; f < cv.num_features(); ++f) {
        std::uint32_t a, b;
        std::memcpy(&a, cv.feature_name(f - 1).data(), 4);
        std::memcpy(&b, cv.feature_name(f).data(), 4);
        REQUIRE(a < b);
    }
}

TEST_CASE("tfidf_vectorizer matches TfidfVectorizer (smooth idf, l2 rows)", "[lexical][tfidf]") {
    const auto j = fixture_json();
    const auto docs = j["docs"].get<std::vector<ids>>();
    const auto queries = j["queries"].get<std::vector<ids>>();
    tfidf_vectorizer<pretokenized> tv;
    const auto rows = tv.fit_transform(spans(docs));
    for (std::size_t d = 0; d < docs.size(); ++d) require_same(by_token(tv.counts(), rows[d]), expected_row(j["tfidf"][d]));
    for (std::uint32_t f = 0; f < tv.num_features(); ++f) {
        std::uint32_t id;
        std::memcpy(&id, tv.counts().feature_name(f).data(), 4);
        REQUIRE(tv.idf(f) == Approx(j["idf"][std::to_string(id)].get<double>()).epsilon(1e-10));
    }
    for (std::size_t q = 0; q < queries.size(); ++q)
        require_same(by_token(tv.counts(), tv.transform(queries[q])), expected_row(j["query_tfidf"][q]));
}

TEST_CASE("tfidf_index cosine search matches scikit-learn and its oracle", "[lexical][tfidf]") {
    const auto j = fixture_json();
    const auto docs = j["docs"].get<std::vector<ids>>();
    const auto queries = j["queries"].get<std::vector<ids>>();
    const auto cos = j["cosine"].get<std::vector<std::vector<double>>>();
    tfidf_index<pretokenized> ix;
    ix.fit(spans(docs));
    REQUIRE(ix.size() == docs.size());
    for (std::size_t q = 0; q < queries.size(); ++q) {
        const auto s = ix.scores(queries[q]);
        for (std::size_t d = 0; d < docs.size(); ++d) REQUIRE(s[d] == Approx(cos[q][d]).margin(1e-6));
        const auto top = ix.search(queries[q], 5);
        // Best first, ties to the lower id; every returned row shares a term with the query.
        for (std::size_t r = 0; r < top.size(); ++r) {
            REQUIRE(top[r].score == Approx(cos[q][static_cast<std::size_t>(top[r].id)]).margin(1e-6));
            if (r > 0)
                REQUIRE((top[r - 1].score > top[r].score ||
                         (top[r - 1].score == top[r].score && top[r - 1].id < top[r].id)));
        }
        std::size_t sharing = 0;
        for (std::size_t d = 0; d < docs.size(); ++d) sharing += s[d] > 0;
        REQUIRE(top.size() == std::min<std::size_t>(5, sharing));
    }
    KITE_REQUIRE_THROWS_CONTAINING(ix.search(queries[0], 0), kite::invalid_argument, "k = 0");
}

TEST_CASE("one_hot_encoder matches OneHotEncoder", "[lexical][onehot]") {
    const auto j = fixture_json();
    const auto values = j["onehot_values"].get<std::vector<std::string>>();
    const auto cats = j["onehot_categories"].get<std::vector<std::string>>();
    const auto want = j["onehot"].get<std::vector<std::vector<int>>>();
    kite::retrieval::one_hot_encoder enc;
    enc.fit(values);
    REQUIRE(enc.num_categories() == cats.size());
    for (std::uint32_t c = 0; c < cats.size(); ++c) CHECK(enc.category(c) == cats[c]);
    const auto m = enc.transform(values);  // [value][category]
    REQUIRE(m.rows() == values.size());
    REQUIRE(m.cols() == cats.size());
    for (std::size_t r = 0; r < m.rows(); ++r)
        for (std::size_t c = 0; c < m.cols(); ++c) REQUIRE(m(r, c) == static_cast<float>(want[r][c]));
    const std::vector<std::string> unknown = {"seoul", "tokyo"};
    KITE_REQUIRE_THROWS_CONTAINING(enc.transform(unknown), kite::not_found_error, "'tokyo'");
    kite::retrieval::one_hot_encoder lenient(kite::retrieval::handle_unknown::ignore);
    lenient.fit(values);
    const auto z = lenient.transform(unknown);
    float row1 = 0;
    for (std::size_t c = 0; c < z.cols(); ++c) row1 += z(1, c);
    CHECK(row1 == 0.0f);
    CHECK(z(0, lenient.category_of("seoul")) == 1.0f);
}
