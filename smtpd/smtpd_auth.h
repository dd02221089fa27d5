// SASL for SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN decoding. Pure functions over the
// client's bytes, no I/O; unit-tested and fuzzed. Decoded values with CR, LF or a stray NUL are refused.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "common/base64.h"

namespace mta::smtpd {

// Strict RFC 4648 base64 (common/base64.h): padding required, no whitespace; nullopt on anything else.
using mta::base64_decode;
using mta::base64_encode;

struct Credentials {
    std::string user, password;
};

// "authzid NUL authcid NUL passwd": exactly two NULs; authzid empty or equal to authcid (no proxy
// authorization); user and password non-empty, at most 255 bytes, no CR/LF/NUL.
std::optional<Credentials> parse_plain(std::string_view decoded);
// A decoded LOGIN user name or password: non-empty, at most 255 bytes, no NUL/CR/LF.
bool valid_login_value(std::string_view decoded);

}  // namespace mta::smtpd
