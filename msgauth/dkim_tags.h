// DKIM tag=value lists (RFC 6376 §3.2): the DKIM-Signature header value (§3.5) and the key record
// (§3.6.1). Strict, bounded parsers of bytes from the network: every problem is an error result.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base64.h"

namespace mta::msgauth {

inline constexpr std::size_t kMaxTags = 64;                  // per tag-list; real ones have about 12
inline constexpr std::size_t kMaxTagListBytes = 16 * 1024;   // whole DKIM-Signature value or key record
inline constexpr std::size_t kMaxSignedHeaders = 128;        // names in h=
inline constexpr std::size_t kMaxDomainText = 253;

struct Tag {
    std::string_view name;
    std::string_view value;   // without the whitespace around it
    std::size_t raw_begin = 0, raw_end = 0;  // in the input: just after '=' up to ';' or the end
};

// tag-list = tag-spec *(";" tag-spec) [";"], FWS allowed around names, '=' and values.
// Errors: a bad tag name, a missing '=', control bytes, duplicate tags, more than kMaxTags tags,
// input over kMaxTagListBytes. Tag names are case-sensitive, as the RFC says.
bool parse_tag_list(std::string_view in, std::vector<Tag>& out, std::string& err);
const Tag* find_tag(const std::vector<Tag>& tags, std::string_view name);  // nullptr when absent

// Base64 as DKIM writes it: whitespace anywhere is ignored, padding must be complete.
// common/base64 in its folded mode: folding whitespace skipped (b=, bh= and p= may be folded).
bool base64_decode(std::string_view in, std::string& out);
using mta::base64_encode;

enum class DkimAlgorithm { rsa_sha256, ed25519_sha256, rsa_sha1 };  // rsa-sha1 only to report it (RFC 8301)
enum class DkimCanon { simple, relaxed };

const char* algorithm_name(DkimAlgorithm a);

struct DkimSignature {
    DkimAlgorithm algorithm = DkimAlgorithm::rsa_sha256;
    DkimCanon header_canon = DkimCanon::simple, body_canon = DkimCanon::simple;
    std::string domain;                       // d=, lower-cased
    std::string selector;                     // s=, lower-cased
    std::vector<std::string> signed_headers;  // h=, lower-cased, in order, repeats kept
    std::string body_hash;                    // bh=, decoded
    std::string signature;                    // b=, decoded
    std::string b_text;                       // b= as written, whitespace removed (for header.b)
    std::string identity;                     // i= as written, or "@" + d
    std::optional<uint64_t> body_length;      // l=
    std::optional<uint64_t> timestamp;        // t=
    std::optional<uint64_t> expiration;       // x=
    std::size_t b_raw_begin = 0, b_raw_end = 0;  // the b= value span in the parsed text, to blank it
};

// The value of one DKIM-Signature header field (after "DKIM-Signature:"). Besides the tag-list
// errors: v= other than 1, a missing required tag (v a b bh d h s), an unknown a= or c=, q= without
// dns/txt, h= without From, i= outside d=, x= before t=, malformed numbers, domains or base64.
bool parse_dkim_signature(std::string_view value, DkimSignature& out, std::string& err);

enum class DkimKeyType { rsa, ed25519 };

struct DkimKey {
    DkimKeyType type = DkimKeyType::rsa;
    std::string public_key;     // p=, decoded: DER for RSA, 32 raw bytes for Ed25519
    bool revoked = false;       // p= empty
    bool testing = false;       // t=y
    bool strict_identity = false;  // t=s: i= must use exactly d=
    bool sha256_allowed = true;    // h= absent or lists sha256
    bool email_service = true;     // s= absent or lists email or *
};

// One TXT record at SELECTOR._domainkey.DOMAIN. Errors: tag-list errors, v= not first or not DKIM1,
// an unknown k=, p= missing or not base64.
bool parse_dkim_key(std::string_view record, DkimKey& out, std::string& err);

// A dot-separated name of LDH (and '_' when allow_underscore) labels of 1..63 bytes, at most 253.
bool valid_dns_name(std::string_view name, bool allow_underscore);

// ASCII case-insensitive comparison (the lower-case copy is common/address.h's addr::lower).
bool iequals(std::string_view a, std::string_view b);

}  // namespace mta::msgauth
