// Pure helpers for mta-resolver's MTA-STS policy fetch and cache: the HTTP/1.0 request and the strict
// reading of the response (RFC 8461 §3.3: status 200 only, no redirects, text/plain, at most 64 KiB),
// and the on-disk cache file format, re-validated whenever it is read. No I/O here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/mta_sts.h"

namespace mta::resolver {

inline constexpr std::size_t kMaxHttpHeaderBytes = 16 * 1024;
inline constexpr std::size_t kMaxHttpResponseBytes = kMaxHttpHeaderBytes + sts::kMaxPolicyBytes;

// "GET /.well-known/mta-sts.txt HTTP/1.0" for host "mta-sts.<domain>" (HTTP/1.0: no chunked replies).
std::string sts_http_request(const std::string& policy_host);

// The whole response as received (the server closed the connection, or the byte cap was hit).
// Returns the body, or nullopt with `err` (status other than 200, bad or missing Content-Type,
// a Transfer-Encoding, truncated or oversized body, malformed header section).
std::optional<std::string> parse_sts_http_response(std::string_view raw, std::string& err);

// Cache file: "mta-sts-cache 1\nid ID\nfetched UNIX\n\n" followed by the policy body as fetched.
struct CachedPolicy {
    std::string id;
    uint64_t fetched = 0;
    sts::Policy policy;
    std::string body;
    uint64_t expires() const { return fetched + policy.max_age; }
};
std::string encode_cache_file(const CachedPolicy& c);
// Validates everything, the policy body included (a tampered or truncated file is refused).
bool decode_cache_file(std::string_view text, CachedPolicy& out, std::string& err);

}  // namespace mta::resolver
