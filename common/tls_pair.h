// A certificate and its private key as the admin configured them (tls_cert, tls_key): do they parse,
// and does the key belong to the first (leaf) certificate? Used by mtad (-n, start, reload) and by
// mta-smtpd before it builds a TLS context, so both say the same thing about the same files.
#pragma once
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

namespace mta {

// Deleters for std::unique_ptr over the OpenSSL objects both users of these checks hold.
struct BioFree {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
    void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// PEM text in; false with `err` ("certificate: ...", "private key: ...", "private key does not match
// the certificate") on any problem.
bool tls_check_pair(const std::string& cert_pem, const std::string& key_pem, std::string& err);

// Reads both files (up to 1 MiB each) and checks them; `err` names the file that cannot be read.
bool tls_check_pair_files(const std::string& cert_path, const std::string& key_path, std::string& err);

}  // namespace mta
