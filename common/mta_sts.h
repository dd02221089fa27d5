// MTA-STS (RFC 8461) pieces shared by mta-resolver (which fetches and caches policies) and mta-smtp
// (which applies them): the TXT record and policy parsers, MX pattern matching, and the way a policy
// travels over IPC as the records of a resolve_reply to the pseudo qtype kQtypeMtaSts.
// Pure functions over untrusted bytes: strict, bounded, no I/O.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mta::sts {

// resolve_request with this qtype (from the private-use range) asks the resolver for a domain's
// MTA-STS policy instead of a DNS record set.
inline constexpr uint16_t kQtypeMtaSts = 65280;

inline constexpr std::size_t kMaxPolicyBytes = 64 * 1024;   // RFC 8461 §3.3
inline constexpr uint64_t kMaxAgeCap = 31557600;            // RFC 8461 §3.2: one year
inline constexpr std::size_t kMaxMxPatterns = 64;
inline constexpr std::size_t kMaxIdLength = 32;

enum class Mode { none, testing, enforce };
const char* mode_name(Mode m);

// `s` without leading and trailing spaces and tabs (the WSP of RFC 5234).
std::string_view trim_wsp(std::string_view s);

struct Policy {
    Mode mode = Mode::none;
    uint64_t max_age = 0;              // capped at kMaxAgeCap
    std::vector<std::string> mx;       // lower-case patterns: "mx.example.com" or "*.example.com"
};

// One TXT record at _mta-sts.<domain>: "v=STSv1; id=...;" (RFC 8461 §3.1). Returns the id, or nullopt
// when the record is not a valid STSv1 record.
std::optional<std::string> parse_txt(std::string_view rec);

// The TXT RRset: records not starting with "v=STSv1" are ignored; exactly one valid STSv1 record is
// required. `why` explains a nullopt.
std::optional<std::string> select_txt(const std::vector<std::string>& records, std::string& why);

// The policy body (RFC 8461 §3.2): LF or CRLF separated "key: value" lines; version STSv1, mode and
// max_age required (mx too unless mode is none); duplicate version/mode/max_age refused; unknown keys
// ignored; max_age capped. False with `err` on anything else.
bool parse_policy(std::string_view body, Policy& out, std::string& err);

// RFC 8461 §4.1: "mx.example.com" matches itself; "*.example.com" matches exactly one extra leftmost
// label. Case-insensitive, a trailing dot on `host` is ignored.
bool mx_matches(std::string_view pattern, std::string_view host);
bool policy_matches(const Policy& p, std::string_view host);

// The answer for mtadns and mta-smtp, carried in resolve_reply records (one "key value" each).
struct Lookup {
    bool found = false;     // a policy applies (from a fetch or the cache)
    Policy policy;
    std::string id;
    std::string source;     // "fetched" or "cached"
    uint64_t expires = 0;   // unix time the cached policy expires
};
std::vector<std::string> encode_lookup(const Lookup& l);
// Strict inverse of encode_lookup (empty records = no policy). False on anything malformed.
bool decode_lookup(const std::vector<std::string>& records, Lookup& out);

}  // namespace mta::sts
