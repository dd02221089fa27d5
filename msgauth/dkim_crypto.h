// The OpenSSL 3.0 side of DKIM: SHA-256, private keys from PEM text (the admin's key files, read by
// the daemon as root), public keys from key records (untrusted DNS data), sign/verify of a header hash.
#pragma once
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/tls_pair.h"
#include "msgauth/dkim_tags.h"

namespace mta::msgauth {

inline constexpr int kMinRsaBits = 1024;  // RFC 8301: smaller RSA keys neither sign nor verify

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Incremental SHA-256. An OpenSSL failure (allocation) leaves ok() false and final() empty.
class Sha256 {
public:
    Sha256();
    void update(std::string_view data);
    std::string final();  // 32 bytes; once
    bool ok() const { return ok_; }

private:
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx_;
    bool ok_ = false;
};

std::string sha256(std::string_view data);

struct DkimPrivateKey {
    DkimKeyType type = DkimKeyType::rsa;
    int bits = 0;
    PkeyPtr pkey;
};

// An unencrypted RSA (>= kMinRsaBits) or Ed25519 private key in PEM (PKCS#8 or PKCS#1).
bool load_private_key(std::string_view pem, DkimPrivateKey& out, std::string& err);

// The key record to publish for a private key: "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or
// "v=DKIM1; k=ed25519; p=<base64 of the 32 raw bytes>" (RFC 8463). Empty on failure.
std::string public_key_record(const DkimPrivateKey& key);

struct DkimPublicKey {
    DkimKeyType type = DkimKeyType::rsa;
    int bits = 0;
    PkeyPtr pkey;
};

// The key in a parsed key record: RSA as SubjectPublicKeyInfo or bare RSAPublicKey DER (no trailing
// bytes), Ed25519 as exactly 32 bytes. Revoked (empty) keys are the caller's business.
bool load_public_key(const DkimKey& record, DkimPublicKey& out, std::string& err);

// RSASSA-PKCS1-v1_5 over the SHA-256 digest, or Ed25519 (PureEdDSA) over the 32 digest bytes (RFC 8463).
bool sign_digest(const DkimPrivateKey& key, std::string_view digest, std::string& signature, std::string& err);
bool verify_digest(const DkimPublicKey& key, std::string_view digest, std::string_view signature);

}  // namespace mta::msgauth
