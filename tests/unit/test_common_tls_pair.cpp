// Unit tests for the certificate/key pair check (common/tls_pair.h) and the mta-smtpd TLS context built
// on it (smtpd/smtpd_tls.h): a matching pair, a key of another certificate, garbage, an encrypted key
// (refused, never a passphrase prompt), a chain file with its leaf first. Keys are made in memory.
#include <doctest/doctest.h>

#include <memory>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string>

#include "common/tls_pair.h"
#include "smtpd/smtpd_tls.h"

using namespace mta;

namespace {

struct Pair {
    std::string cert, key;
};

std::string bio_text(BIO* b) {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    std::string s(p, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
}

// A self-signed P-256 certificate for `cn`; `pass` encrypts the key PEM when not empty.
Pair make_pair(const char* cn, const std::string& pass = "") {
    EVP_PKEY* k = EVP_EC_gen("P-256");
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, k, EVP_sha256());
    BIO* cb = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(cb, x);
    BIO* kb = BIO_new(BIO_s_mem());
    if (pass.empty()) PEM_write_bio_PrivateKey(kb, k, nullptr, nullptr, 0, nullptr, nullptr);
    else PEM_write_bio_PKCS8PrivateKey(kb, k, EVP_aes_128_cbc(), nullptr, 0, nullptr, const_cast<char*>(pass.c_str()));
    Pair p{bio_text(cb), bio_text(kb)};
    X509_free(x);
    EVP_PKEY_free(k);
    return p;
}

}  // namespace

TEST_CASE("tls_check_pair: matching pair, foreign key, garbage, encrypted key") {
    Pair a = make_pair("a.test"), b = make_pair("b.test");
    std::string err;
    CHECK(tls_check_pair(a.cert, a.key, err));
    CHECK_FALSE(tls_check_pair(a.cert, b.key, err));
    CHECK(err == "private key does not match the certificate");
    CHECK_FALSE(tls_check_pair("not a certificate\n", a.key, err));
    CHECK(err.rfind("certificate: ", 0) == 0);
    CHECK_FALSE(tls_check_pair(a.cert, "", err));
    CHECK(err.rfind("private key: ", 0) == 0);
    Pair enc = make_pair("enc.test", "secret");
    CHECK(enc.key.find("ENCRYPTED") != std::string::npos);
    CHECK_FALSE(tls_check_pair(enc.cert, enc.key, err));  // no prompt on the terminal, just refused
    CHECK(err.rfind("private key: ", 0) == 0);
    // A chain file: the leaf first, then more certificates; the key must belong to the leaf.
    CHECK(tls_check_pair(a.cert + b.cert, a.key, err));
    CHECK_FALSE(tls_check_pair(b.cert + a.cert, a.key, err));
}

TEST_CASE("tls_check_pair_files names an unreadable file") {
    std::string err;
    CHECK_FALSE(tls_check_pair_files("/nonexistent/cert.pem", "/nonexistent/key.pem", err));
    CHECK(err == "/nonexistent/cert.pem: cannot read");
}

TEST_CASE("smtpd TLS context: same verdicts as tls_check_pair") {
    Pair a = make_pair("a.test"), b = make_pair("b.test");
    std::string err;
    CHECK(smtpd::tls_context_from_pem(a.cert + b.cert, a.key, err) != nullptr);
    CHECK(smtpd::tls_context_from_pem(a.cert, b.key, err) == nullptr);
    CHECK(err == "private key does not match the certificate");
    Pair enc = make_pair("enc.test", "secret");
    CHECK(smtpd::tls_context_from_pem(enc.cert, enc.key, err) == nullptr);
}
