#include "msgauth/dkim_keygen.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <memory>

namespace mta::msgauth {

namespace {
std::string openssl_error() {
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return e ? buf : "unknown OpenSSL error";
}

struct BioFree {
    void operator()(BIO* b) const { BIO_free(b); }
};
}  // namespace

bool generate_private_key(DkimKeyType type, int bits, DkimPrivateKey& out, std::string& err) {
    EVP_PKEY* k = nullptr;
    if (type == DkimKeyType::rsa) {
        if (bits == 0) bits = kDefaultRsaBits;
        if (bits < kMinRsaBits || bits > kMaxRsaBits) {
            err = "RSA key size must be " + std::to_string(kMinRsaBits) + " to " + std::to_string(kMaxRsaBits) + " bits";
            return false;
        }
        k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t(bits));
    } else {
        k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
        bits = 256;
    }
    if (!k) { err = "key generation failed: " + openssl_error(); return false; }
    out.type = type;
    out.bits = bits;
    out.pkey.reset(k);
    return true;
}

std::string private_key_pem(const DkimPrivateKey& key) {
    std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
    if (!bio || !key.pkey || !PEM_write_bio_PrivateKey(bio.get(), key.pkey.get(), nullptr, nullptr, 0, nullptr, nullptr))
        return {};
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return n > 0 ? std::string(data, std::size_t(n)) : std::string();
}

std::string txt_record_line(std::string_view selector, std::string_view domain, std::string_view record) {
    std::string out;
    out.append(selector).append("._domainkey.").append(domain).append(". IN TXT");
    for (std::size_t off = 0; off < record.size(); off += 255) {
        // The record is base64, tags and "; ": nothing in it needs escaping inside the quotes.
        out.append(" \"").append(record.substr(off, 255)).append("\"");
    }
    return out;
}

}  // namespace mta::msgauth
