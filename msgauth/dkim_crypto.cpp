// SHA-256, DKIM key loading and digest signing/verification with OpenSSL 3.0 EVP (see dkim_crypto.h).
#include "msgauth/dkim_crypto.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

namespace mta::msgauth {

namespace {

bool openssl_fail(std::string& err, std::string text) {
    ERR_clear_error();
    err = std::move(text);
    return false;
}

// Which DKIM key type an EVP key is; false for anything else (EC, DSA, ...).
bool key_type_of(const EVP_PKEY* k, DkimKeyType& type) {
    switch (EVP_PKEY_get_base_id(k)) {
        case EVP_PKEY_RSA: type = DkimKeyType::rsa; return true;
        case EVP_PKEY_ED25519: type = DkimKeyType::ed25519; return true;
        default: return false;
    }
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    ok_ = ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1;
}

void Sha256::update(std::string_view data) {
    if (ok_ && !data.empty()) ok_ = EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) == 1;
}

std::string Sha256::final() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1) {
        ok_ = false;
        ERR_clear_error();
        return {};
    }
    ok_ = false;  // finalized
    return std::string(reinterpret_cast<const char*>(md), len);
}

std::string sha256(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.final();
}

bool load_private_key(std::string_view pem, DkimPrivateKey& out, std::string& err) {
    out = DkimPrivateKey{};
    ERR_clear_error();
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    // A null passphrase callback would prompt on the terminal for an encrypted key: refuse instead.
    auto no_pass = [](char*, int, int, void*) { return 0; };
    if (bio) out.pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_pass, nullptr));
    if (!out.pkey) return openssl_fail(err, "no unencrypted PEM private key found");
    if (!key_type_of(out.pkey.get(), out.type)) return openssl_fail(err, "private key is neither RSA nor Ed25519");
    out.bits = EVP_PKEY_get_bits(out.pkey.get());
    if (out.type == DkimKeyType::rsa && out.bits < kMinRsaBits)
        return openssl_fail(err, "RSA key of " + std::to_string(out.bits) + " bits is too small (RFC 8301)");
    return true;
}

std::string public_key_record(const DkimPrivateKey& key) {
    if (!key.pkey) return {};
    std::string der;
    if (key.type == DkimKeyType::ed25519) {
        unsigned char raw[32];
        std::size_t len = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(key.pkey.get(), raw, &len) != 1 || len != sizeof raw) {
            ERR_clear_error();
            return {};
        }
        der.assign(reinterpret_cast<const char*>(raw), len);
    } else {
        int len = i2d_PUBKEY(key.pkey.get(), nullptr);
        if (len <= 0) {
            ERR_clear_error();
            return {};
        }
        der.resize(static_cast<std::size_t>(len));
        auto* p = reinterpret_cast<unsigned char*>(der.data());
        if (i2d_PUBKEY(key.pkey.get(), &p) != len) {
            ERR_clear_error();
            return {};
        }
    }
    return std::string("v=DKIM1; k=") + (key.type == DkimKeyType::rsa ? "rsa" : "ed25519") +
           "; p=" + base64_encode(der);
}

bool load_public_key(const DkimKey& record, DkimPublicKey& out, std::string& err) {
    out = DkimPublicKey{};
    ERR_clear_error();
    const std::string& der = record.public_key;
    const auto* data = reinterpret_cast<const unsigned char*>(der.data());
    const auto len = static_cast<long>(der.size());
    if (record.type == DkimKeyType::ed25519) {
        if (der.size() != 32) return openssl_fail(err, "Ed25519 key is not 32 bytes");
        out.pkey.reset(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, data, der.size()));
        if (!out.pkey) return openssl_fail(err, "unusable Ed25519 key");
        out.type = DkimKeyType::ed25519;
        out.bits = 256;
        return true;
    }
    const unsigned char* p = data;
    out.pkey.reset(d2i_PUBKEY(nullptr, &p, len));
    if (!out.pkey || p != data + len) {
        p = data;
        out.pkey.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, len));
    }
    if (!out.pkey || p != data + len) return openssl_fail(err, "key p= is not an RSA public key");
    if (!key_type_of(out.pkey.get(), out.type) || out.type != DkimKeyType::rsa)
        return openssl_fail(err, "key p= is not an RSA public key");
    out.bits = EVP_PKEY_get_bits(out.pkey.get());
    ERR_clear_error();
    return true;
}

bool sign_digest(const DkimPrivateKey& key, std::string_view digest, std::string& signature, std::string& err) {
    signature.clear();
    if (!key.pkey) return openssl_fail(err, "no key");
    const auto* md = reinterpret_cast<const unsigned char*>(digest.data());
    std::size_t len = 0;
    if (key.type == DkimKeyType::ed25519) {
        std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
        if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.pkey.get()) != 1 ||
            EVP_DigestSign(ctx.get(), nullptr, &len, md, digest.size()) != 1)
            return openssl_fail(err, "Ed25519 signing failed");
        signature.resize(len);
        if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len, md, digest.size()) != 1)
            return openssl_fail(err, "Ed25519 signing failed");
    } else {
        std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(key.pkey.get(), nullptr));
        if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1 ||
            EVP_PKEY_sign(ctx.get(), nullptr, &len, md, digest.size()) != 1)
            return openssl_fail(err, "RSA signing failed");
        signature.resize(len);
        if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len, md, digest.size()) != 1)
            return openssl_fail(err, "RSA signing failed");
    }
    signature.resize(len);
    return true;
}

bool verify_digest(const DkimPublicKey& key, std::string_view digest, std::string_view signature) {
    if (!key.pkey) return false;
    const auto* md = reinterpret_cast<const unsigned char*>(digest.data());
    const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
    bool ok = false;
    if (key.type == DkimKeyType::ed25519) {
        std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
        ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.pkey.get()) == 1 &&
             EVP_DigestVerify(ctx.get(), sig, signature.size(), md, digest.size()) == 1;
    } else {
        std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(key.pkey.get(), nullptr));
        ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
             EVP_PKEY_verify(ctx.get(), sig, signature.size(), md, digest.size()) == 1;
    }
    ERR_clear_error();
    return ok;
}

}  // namespace mta::msgauth
