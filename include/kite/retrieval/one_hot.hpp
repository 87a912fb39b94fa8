#pragma once
/// @file kite/retrieval/one_hot.hpp
/// kite::retrieval::one_hot_encoder: one-hot vectors of categorical values (tokens), as
/// scikit-learn's OneHotEncoder with one feature: categories are the fitted values in sorted
/// (byte) order; transform() gives one row per value with a single 1 in its category's column.
/// Unknown values raise not_found_error (handle_unknown="error", the default) or give an all-zero
/// row (handle_unknown::ignore).

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/retrieval/vocabulary.hpp"

namespace kite::retrieval {

/// What transform() does with a value it was not fitted on.
enum class handle_unknown { error, ignore };

/// One-hot encoder over string categories.
class one_hot_encoder {
public:
    explicit one_hot_encoder(handle_unknown unknown = handle_unknown::error) : unknown_(unknown) {}

    /// Learns the categories (distinct values, sorted) of `values`.
    template <class R>
    void fit(const R& values) {
        std::vector<std::string> cats;
        for (const auto& v : values) cats.emplace_back(std::string_view(v));
        std::sort(cats.begin(), cats.end());
        cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
        vocab_ = vocabulary();
        for (const auto& c : cats) vocab_.insert(c);  // ids are the sorted ranks
    }

    /// Column of `value`, or vocabulary::npos when it is unknown.
    std::uint32_t category_of(std::string_view value) const noexcept { return vocab_.find(value); }
    std::size_t num_categories() const noexcept { return vocab_.size(); }
    std::string_view category(std::uint32_t c) const noexcept { return vocab_.term(c); }

    /// Rows [value][category] with one 1 each (all zero for ignored unknown values).
    template <class R>
    matrix<float> transform(const R& values) const {
        std::vector<std::uint32_t> cols;
        for (const auto& v : values) {
            const std::string_view s(v);
            const std::uint32_t c = vocab_.find(s);
            KITE_REQUIRE(c != vocabulary::npos || unknown_ == handle_unknown::ignore, not_found_error,
                         "one_hot_encoder::transform: value '", s,
                         "' was not seen by fit(); expected one of the ", vocab_.size(), " categories");
            cols.push_back(c);
        }
        matrix<float> out(cols.size(), vocab_.size(), 0.0f);  // [value][category]
        for (std::size_t r = 0; r < cols.size(); ++r)
            if (cols[r] != vocabulary::npos) out(r, cols[r]) = 1.0f;
        return out;
    }

private:
    handle_unknown unknown_;
    vocabulary vocab_;
};

}  // namespace kite::retrieval
