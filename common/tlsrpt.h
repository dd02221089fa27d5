// SMTP TLS Reporting (RFC 8460) as pure functions and data: the per-day counts of outbound TLS outcomes
// by policy domain, their storage form (the queue keeps it in LMDB, so decoding trusts nothing), the JSON
// report, the report message, and the _smtp._tls TXT record. No I/O, no clock, no DNS: time comes in.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mta::tlsrpt {

// Memory bounds of one report period. Sessions beyond a cap still count where they can: past
// kMaxDetailsPerPolicy a failure only raises its policy's total-failure-session-count; a domain's
// policies past kMaxPoliciesPerDomain are not counted at all (they have no policy to count under).
inline constexpr std::size_t kMaxPoliciesPerDomain = 100;
inline constexpr std::size_t kMaxDetailsPerPolicy = 100;
inline constexpr std::size_t kMaxPolicyStrings = 64;  // policy-string lines, and mx-host patterns
inline constexpr std::size_t kMaxPolicyString = 1024; // one policy line or TLSA record (longer: cut)
inline constexpr std::size_t kMaxField = 255;         // domain, host, address, helo, reason, info (cut)

// One outbound session's TLS outcome as the SMTP client reports it. For a success only the policy
// fields matter. An unknown policy_type counts as "no-policy-found"; an unknown result_type as
// "validation-failure" with the unknown type as failure_reason_code (when that is empty).
struct Result {
    std::string policy_type;                     // "sts", "tlsa" or "no-policy-found"
    std::string policy_domain;                   // lower-cased again on add
    std::vector<std::string> policy_strings;     // sts: the policy's lines; tlsa: TLSA records as text
    std::vector<std::string> mx_host_patterns;   // sts only, may be empty
    bool success = false;
    std::string result_type;                     // RFC 8460 §4.3, e.g. "certificate-expired"
    std::string sending_mta_ip, receiving_mx_hostname, receiving_mx_helo, receiving_ip;
    std::string additional_information, failure_reason_code;
};

bool valid_result_type(std::string_view s);
bool valid_policy_type(std::string_view s);

// A failure-details group: every field but `count` is part of its identity.
struct FailureDetail {
    std::string result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo, receiving_ip;
    std::string additional_information, failure_reason_code;
    uint64_t count = 0;
    bool operator==(const FailureDetail&) const = default;
};

// One policy of one domain: identified by (type, domain, strings, mx_host_patterns).
struct Policy {
    std::string type, domain;
    std::vector<std::string> strings, mx_host_patterns;
    uint64_t successes = 0, failures = 0;        // failures >= the sum of details' counts
    std::vector<FailureDetail> details;          // in order of first appearance
    bool operator==(const Policy&) const = default;
};

// The counts of one report period for all policy domains. Counters saturate instead of wrapping.
class Aggregate {
public:
    void add(const Result& r, uint64_t count = 1);
    void merge(const Aggregate& other);
    void erase(const std::string& domain);

    std::vector<std::string> domains() const;    // sorted
    const std::vector<Policy>& policies(const std::string& domain) const;  // empty when unknown
    bool empty() const { return domains_.empty(); }

    // Storage form, version 1: a version byte, varint counts and length-prefixed strings, and a
    // CRC-32 of all that. decode accepts only what encode can produce (bounds, order, no duplicates,
    // no zero counts, detail counts within the failure total) and leaves `out` alone on error.
    std::string encode() const;
    static bool decode(std::string_view in, Aggregate& out, std::string& err);

    bool operator==(const Aggregate&) const = default;

private:
    Policy* find_or_add(const Policy& key);  // nullptr when key.domain has no room for another
    std::map<std::string, std::vector<Policy>> domains_;
};

struct ReportMeta {
    std::string organization, contact, report_id;
    uint64_t start = 0, end = 0;                 // unix seconds
};

// RFC 3339 UTC, "2026-01-31T00:00:00Z" (clamped to year 9999).
std::string rfc3339(uint64_t t);

// The RFC 8460 §4.4 JSON report of one policy domain (compact, valid JSON for any input bytes).
std::string report_json(const Aggregate& agg, const std::string& domain, const ReportMeta& meta);

// gzip (RFC 1952) of `in`, deterministic (no timestamp in the header).
bool gzip(std::string_view in, std::string& out, std::string& err);

// The report destinations of a _smtp._tls TXT record (RFC 8460 §3): mailto addresses decoded
// (no "mailto:", no "?query", percent-decoded, a plausible local@domain), https URIs as published.
struct Rua {
    std::vector<std::string> mailto;
    std::vector<std::string> https;
};
bool parse_record(std::string_view txt, Rua& out, std::string& err);

struct MessageMeta {
    std::string from, to, submitter, message_id; // addresses and id without angle brackets
};

// "submitter!policy-domain!begin!end!unique-id.json.gz" (RFC 8460 §5.1; unique-id is ALPHA / DIGIT
// only, so other characters of the report id are dropped, and an empty one is left out).
std::string report_filename(const std::string& domain, const ReportMeta& meta, const MessageMeta& mm);

// The complete RFC 8460 §5.3 report message (multipart/report; report-type="tlsrpt"), CRLF lines, to
// be DKIM-signed and sent by the caller. "" with err when compression fails.
std::string report_message(const Aggregate& agg, const std::string& domain, const ReportMeta& meta,
                           const MessageMeta& mm, std::string& err);

}  // namespace mta::tlsrpt
