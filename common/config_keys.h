// Internal to common/config*.cpp: the key table and the small parsers the parser shares with it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace mta::config_detail {

using Setter = std::function<bool(Config&, const std::string&, std::string&)>;

struct KeyDef {
    KeyInfo info;
    Setter set;
};

// Every key, in the order mtaconf prints them.
const std::vector<KeyDef>& key_defs();

std::string trim(std::string_view s);                  // spaces, tabs and CR off both ends
bool parse_u64(std::string_view s, uint64_t& out);     // decimal digits only, at most 19
const std::string& default_hostname();                 // FQDN when the resolver knows one

}  // namespace mta::config_detail
