// RFC 5321 path and mailbox parsing: pure functions over bytes, no I/O.
// Trusts nothing: every input here comes straight from the network.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mta::addr {

// Limits from RFC 5321 §4.5.3.1.
inline constexpr std::size_t kMaxLocalPart = 64;
inline constexpr std::size_t kMaxDomain = 255;
inline constexpr std::size_t kMaxPath = 256;

struct Mailbox {
    std::string local;        // as written, quotes removed and quoted-pairs decoded
    std::string domain;       // lower-cased for dot-atom domains; "[...]" kept verbatim for literals
    bool quoted = false;      // local part was a quoted-string
    bool literal = false;     // domain is an address literal "[1.2.3.4]" / "[IPv6:...]"
    bool null_path = false;   // "<>"
    bool utf8 = false;        // contains bytes >= 0x80 (only accepted when smtputf8)

    // Canonical "local@domain" text (quoted again if needed); "" for the null path.
    std::string str() const;
};

struct PathResult {
    bool ok = false;
    Mailbox mailbox;
    std::string_view rest;    // what follows the closing '>' (ESMTP parameters), leading spaces skipped
    const char* enhanced = "5.1.3";  // enhanced status code for the error
    std::string error;        // human text for the 5xx reply when !ok
};

struct PathOptions {
    bool allow_null = false;  // true for MAIL FROM
    bool smtputf8 = false;    // client asked for SMTPUTF8 on this transaction
    bool allow_postmaster = false;  // RCPT TO:<Postmaster> without domain (RFC 5321 §4.1.1.3)
};

// Parse "<path> [params]" as it follows "MAIL FROM:" / "RCPT TO:".
// Accepts and discards an RFC 5321 source route ("<@a,@b:user@dom>").
// Rejects: missing brackets, over-long parts, control characters, NUL, bytes >= 0x80 unless smtputf8,
// empty local part or domain, malformed domains and address literals.
PathResult parse_path(std::string_view arg, const PathOptions& opts);

// Validate a domain (dot-atom of LDH labels, or an address literal). Used for EHLO args too.
bool valid_domain(std::string_view d, bool smtputf8 = false);

// Decode RFC 3461 xtext ("+HH" escapes). nullopt on malformed input or if the decoded value
// contains CR, LF, NUL, any other control byte, DEL or a byte >= 0x80 (spaces are allowed).
std::optional<std::string> xtext_decode(std::string_view s);
std::string xtext_encode(std::string_view s);

// True when every byte >= 0x80 in s is part of a well-formed UTF-8 sequence (RFC 3629).
bool utf8_valid(std::string_view s);

// Lower-case ASCII copy.
std::string lower(std::string_view s);

}  // namespace mta::addr
