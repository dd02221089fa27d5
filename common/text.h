// Small string helpers shared by the table parsers, the stored-state decoders and the admin listings.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace mta {

// Every field between separators, empty ones included ("" is one empty field; "a," is "a" and "").
inline std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    for (std::size_t i = 0;;) {
        std::size_t j = s.find(sep, i);
        if (j == std::string_view::npos) {
            out.push_back(s.substr(i));
            return out;
        }
        out.push_back(s.substr(i, j - i));
        i = j + 1;
    }
}

inline std::string join(const std::vector<std::string>& v, std::string_view sep = ",") {
    std::string s;
    for (std::size_t i = 0; i < v.size(); i++) s.append(i ? sep : "").append(v[i]);
    return s;
}

}  // namespace mta
