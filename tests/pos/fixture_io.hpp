#pragma once
// Reader of the text fixtures written by tools/pos_make_fixtures.py and
// tools/attn_make_fixtures.py, and the LCG that reproduces their inputs bit for bit.
//
//   case <name>
//   param <key> <value>
//   array <name> <count>
//   <count values, whitespace separated>
//   end

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kite_test.hpp"

namespace kite::test {

struct fixture_case {
    std::string name;
    std::map<std::string, std::string> params;
    std::map<std::string, std::vector<double>> arrays;

    const std::string& str(const std::string& k) const { return params.at(k); }
    double num(const std::string& k) const { return std::stod(params.at(k)); }
    std::size_t size(const std::string& k) const { return static_cast<std::size_t>(std::stoull(params.at(k))); }
    const std::vector<double>& array(const std::string& k) const { return arrays.at(k); }
    std::vector<float> floats(const std::string& k) const {
        const auto& a = arrays.at(k);
        return std::vector<float>(a.begin(), a.end());
    }
    std::vector<std::size_t> indices(const std::string& k) const {
        const auto& a = arrays.at(k);
        std::vector<std::size_t> r;
        for (double x : a) r.push_back(static_cast<std::size_t>(x));
        return r;
    }
};

inline std::vector<fixture_case> load_cases(const std::string& rel) {
    std::ifstream in(fixture(rel));
    if (!in) throw std::runtime_error("cannot open fixture " + rel);
    std::vector<fixture_case> cases;
    std::string word;
    while (in >> word) {
        if (word[0] == '#') {
            std::string rest;
            std::getline(in, rest);
            continue;
        }
        if (word == "case") {
            cases.emplace_back();
            in >> cases.back().name;
        } else if (word == "param") {
            std::string k, v;
            in >> k >> v;
            cases.back().params[k] = v;
        } else if (word == "array") {
            std::string k;
            std::size_t n = 0;
            in >> k >> n;
            std::vector<double> a(n);
            for (auto& x : a) in >> x;
            cases.back().arrays[k] = std::move(a);
        } else if (word != "end") {
            throw std::runtime_error("fixture " + rel + ": unexpected word " + word);
        }
    }
    return cases;
}

/// n floats in [-1, 1), exact in float32: the same 64-bit LCG as the fixture scripts.
inline std::vector<float> lcg_floats(std::size_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    std::uint64_t s = seed;
    for (auto& x : v) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<float>(static_cast<double>(s >> 40) / 8388608.0 - 1.0);
    }
    return v;
}

}  // namespace kite::test
