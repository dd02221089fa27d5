// DKIM signing (RFC 6376, Ed25519 RFC 8463): relaxed/relaxed over the §5.4.1 header set with the
// identity and MIME headers oversigned. Trusts its keys (loaded from the admin's files); the message
// is the user's, so nothing in it can make signing fail other than its size.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "msgauth/dkim_canon.h"
#include "msgauth/dkim_crypto.h"

namespace mta::msgauth {

struct DkimSigningKey {
    std::string domain;    // d=, lower-case
    std::string selector;  // s=
    DkimPrivateKey key;
};

// The h= list for a message: every present header of the signed set once per instance, and the
// oversigned ones (From, To, Subject, Date, Message-ID, Reply-To, Cc, MIME headers) once more, so
// that an added instance breaks the signature.
std::vector<std::string> headers_to_sign(const std::vector<HeaderField>& fields);

class DkimSigner {
public:
    // Keys are borrowed and must outlive the signer; `now` is t=, `expire_after` sets x= = now + it.
    DkimSigner(std::vector<const DkimSigningKey*> keys, uint64_t now,
               std::optional<uint64_t> expire_after = std::nullopt);

    void feed_body(std::string_view chunk);  // the body only, in any chunks

    // One folded "DKIM-Signature: ..." field per key, CRLF-terminated, in key order, for prepending.
    bool finish(const std::vector<HeaderField>& fields, std::vector<std::string>& out, std::string& err);

private:
    std::vector<const DkimSigningKey*> keys_;
    uint64_t now_;
    std::optional<uint64_t> expire_after_;
    BodyCanonicalizer body_{DkimCanon::relaxed};
    Sha256 body_hash_;
    std::string buf_;
};

// Whole message in memory: header section, body and signatures in one call (tools and tests).
bool dkim_sign_message(std::string_view message, const std::vector<const DkimSigningKey*>& keys, uint64_t now,
                       std::vector<std::string>& out, std::string& err);

}  // namespace mta::msgauth
