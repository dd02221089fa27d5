// SPF macro strings (RFC 7208 §7): syntax check and expansion of %{s l o d i p h c r t v} with the digit
// and 'r' transformers, delimiters, URL-escaping upper-case letters, %% %_ %-. Pure; the validated
// PTR name behind %{p} is computed by the evaluator and handed in, since finding it takes DNS.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "msgauth/spf_record.h"

namespace mta::msgauth {

inline constexpr std::size_t kMaxMacroExpansion = 8192;

struct SpfMacroContext {
    std::string_view sender;         // s: local-part@domain
    std::string_view local_part;     // l
    std::string_view sender_domain;  // o
    std::string_view domain;         // d: the domain whose record is being evaluated
    IpAddress ip;                    // i, c, v
    std::string_view helo;           // h
    std::string_view receiver;       // r
    uint64_t now = 0;                // t
    const std::string* validated_name = nullptr;  // p; nullptr: not looked up yet
};

enum class MacroKind {
    domain,  // domain-spec and modifier values: c, r, t are refused (§7.1)
    exp,     // the explanation TXT: c, r, t allowed, and spaces
};

bool valid_macro_string(std::string_view s, MacroKind kind);

enum class MacroStatus { ok, syntax_error, needs_ptr };

// Appends the expansion to `out` (cleared first). needs_ptr: %{p} appears and validated_name is unset;
// the caller looks the name up and calls again. syntax_error also when the result exceeds kMaxMacroExpansion.
MacroStatus expand_macros(std::string_view s, const SpfMacroContext& ctx, MacroKind kind, std::string& out);

// An expanded domain-spec as a query name (§7.3): one trailing dot dropped, lower-cased, labels removed
// from the left until it fits in 253 bytes. Empty when the result is not a name mta-resolver can ask
// (empty or over-long labels, bytes other than letters, digits, '-' and '_').
std::string spf_query_name(std::string_view expanded);

}  // namespace mta::msgauth
