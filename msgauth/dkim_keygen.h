// DKIM key generation for `mtadkim keygen`: a fresh RSA or Ed25519 private key, its PKCS#8 PEM for
// the key file, and the zone-file line that publishes the public half.
#pragma once
#include <string>
#include <string_view>

#include "msgauth/dkim_crypto.h"

namespace mta::msgauth {

inline constexpr int kDefaultRsaBits = 2048;  // RFC 8301 §3.2: signers SHOULD use at least 2048 bits
inline constexpr int kMaxRsaBits = 8192;      // beyond that a key record no longer fits a UDP answer well

// RSA with `bits` (kMinRsaBits..kMaxRsaBits; 0 means kDefaultRsaBits) or Ed25519 (bits ignored).
bool generate_private_key(DkimKeyType type, int bits, DkimPrivateKey& out, std::string& err);

// The unencrypted PKCS#8 PEM of a private key ("-----BEGIN PRIVATE KEY-----"); empty on failure.
std::string private_key_pem(const DkimPrivateKey& key);

// One zone-file line: `SELECTOR._domainkey.DOMAIN. IN TXT "..." "..."`, the record split into
// character-strings of at most 255 octets (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them again).
std::string txt_record_line(std::string_view selector, std::string_view domain, std::string_view record);

}  // namespace mta::msgauth
