#pragma once
/// @file kite/core/string_map.hpp
/// string_map<V>: a hash map from std::string keys that is searched with std::string_view
/// (heterogeneous lookup), so looking up a slice of a text never builds a string.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace kite {

/// Transparent hash of anything convertible to std::string_view.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

/// Hash map keyed by std::string, searchable by std::string_view without allocating.
template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;

}  // namespace kite
