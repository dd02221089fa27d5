// Certificate/key pair check (see tls_pair.h). Admin-supplied files only; no peer bytes come here.
#include "common/tls_pair.h"

#include <memory>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/file_util.h"

namespace mta {
namespace {

std::string first_error() {
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (!e) return "no PEM data found";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

}  // namespace

bool tls_check_pair(const std::string& cert_pem, const std::string& key_pem, std::string& err) {
    ERR_clear_error();
    std::unique_ptr<BIO, BioFree> cb(BIO_new_mem_buf(cert_pem.data(), int(cert_pem.size())));
    std::unique_ptr<X509, X509Free> leaf(cb ? PEM_read_bio_X509_AUX(cb.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!leaf) { err = "certificate: " + first_error(); return false; }
    std::unique_ptr<BIO, BioFree> kb(BIO_new_mem_buf(key_pem.data(), int(key_pem.size())));
    // A null passphrase callback would prompt on the terminal for an encrypted key: refuse instead.
    auto no_pass = [](char*, int, int, void*) { return 0; };
    std::unique_ptr<EVP_PKEY, PkeyFree> key(kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, no_pass, nullptr) : nullptr);
    if (!key) { err = "private key: " + first_error(); return false; }
    if (X509_check_private_key(leaf.get(), key.get()) != 1) {
        ERR_clear_error();
        err = "private key does not match the certificate";
        return false;
    }
    return true;
}

bool tls_check_pair_files(const std::string& cert_path, const std::string& key_path, std::string& err) {
    std::string cert, key;
    const std::size_t max = 1 << 20;
    if (!read_file(cert_path, cert, max)) { err = cert_path + ": cannot read"; return false; }
    if (!read_file(key_path, key, max)) { err = key_path + ": cannot read"; return false; }
    bool ok = tls_check_pair(cert, key, err);
    OPENSSL_cleanse(key.data(), key.size());
    return ok;
}

}  // namespace mta
