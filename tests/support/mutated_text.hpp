// Texts changed at random for the readers' differential tests: a valid document with one to
// three edits, each a byte from `alphabet` inserted or written over one, a byte removed, the
// text cut short, or (when given) `fragment` inserted.
#pragma once

#include <cstddef>
#include <random>
#include <string>
#include <string_view>

namespace gw::test {

inline std::string mutated(std::string v, std::mt19937& rng, std::string_view alphabet, std::string_view fragment = {})
{
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
        const std::size_t at = rng() % (v.size() + 1);
        const char c = alphabet[rng() % alphabet.size()];
        switch (rng() % (fragment.empty() ? 4 : 5)) {
        case 0: v.insert(v.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        case 1: if (at < v.size()) v[at] = c; break;
        case 2: if (at < v.size()) v.erase(at, 1); break;
        case 3: if (!fragment.empty()) { v.insert(at, fragment); break; } [[fallthrough]];
        default: v.resize(at); break;
        }
    }
    return v;
}

} // namespace gw::test
