// Alias and virtual alias expansion (Postfix alias_maps / virtual_alias_maps): which final recipients
// an address stands for. Pure given its lookups; used by mta-smtpd at RCPT and by sendmail. Trusts
// the tables (admin-made) only as far as each target still parses as an address.
#pragma once
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/table.h"

namespace mta::alias {

inline constexpr int kMaxDepth = 10;                 // nested expansions below the original address
inline constexpr std::size_t kMaxRecipients = 1000;  // final recipients of one original address
inline constexpr std::size_t kMaxLookups = 10000;    // distinct addresses looked at for one expansion

using Lookup = std::function<std::optional<std::string>(std::string_view key)>;

struct Maps {
    Lookup virtual_map;  // keys "user@domain", "@domain", "domain" (a virtual alias domain)
    Lookup aliases;      // keys: lower-cased local parts
    bool empty() const { return !virtual_map && !aliases; }
};

// Lookups over open tables; a null table gives no lookup.
Maps from_tables(const table::Table* virtual_map, const table::Table* aliases);

enum class Status { not_found, expanded, error };

struct Result {
    Status status = Status::not_found;
    std::vector<std::string> rcpts;  // expanded: final recipients, duplicates removed, first spelling kept
    std::string error;               // error: what went wrong in detail, for the log
    const char* summary = "";        // error: a short reason for an SMTP reply (names no table contents)
};

// Expands `address` ("local@domain", or a bare "Postmaster"): the virtual table first for every
// address (key user@domain, then the @domain catch-all), then the aliases for addresses of
// local_domains (key: the lower-cased local part; also a bare postmaster). Targets are expanded again
// up to kMaxDepth; an address met again on its own expansion path is final (it delivers to its own
// mailbox instead of looping). Targets without a domain get `default_domain(cfg)`; a virtual target
// "@domain" keeps the local part.
Result expand(std::string_view address, const Config& cfg, const Maps& maps);

// A domain listed on its own (no '@') in the virtual table: only its listed users exist.
bool is_virtual_domain(std::string_view domain_lower, const Maps& maps);

// The domain given to targets and sendmail recipients that have none.
std::string default_domain(const Config& cfg);

// Build-time check of one aliases (`virtual_kind` false) or virtual entry, the key already
// lower-cased: targets must be addresses; "|command", "/file" and ":include:" are refused.
bool check_entry(bool virtual_kind, std::string_view key, std::string_view value, std::string& err);

// "a, b c" -> {"a", "b", "c"}.
std::vector<std::string> split_targets(std::string_view value);

}  // namespace mta::alias
