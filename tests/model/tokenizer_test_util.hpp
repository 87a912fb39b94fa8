#pragma once
// Shared by the tokenizer tests: fixture JSON reading and the fixture strings.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite_test.hpp"

namespace kite::test {

inline nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream f(p);
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
}

/// tests/fixtures/model/tokenizers/strings.json: the strings every tokenizer fixture encodes.
inline const std::vector<std::string>& tokenizer_strings() {
    static const std::vector<std::string> s =
        read_json(fixture("model/tokenizers/strings.json")).get<std::vector<std::string>>();
    return s;
}

inline std::vector<std::int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<std::int32_t>>(); }

}  // namespace kite::test
