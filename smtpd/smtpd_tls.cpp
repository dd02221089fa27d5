// OpenSSL server context setup. The certificate and key are the admin's; nothing here sees client
// bytes (the handshake itself runs inside libevent's OpenSSL bufferevent).
#include "smtpd/smtpd_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "common/file_util.h"
#include "common/tls_pair.h"

namespace mta::smtpd {
namespace {

std::string ssl_errors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

int no_passphrase(char*, int, int, void*) { return 0; }

}  // namespace

TlsContext tls_context_from_pem(const std::string& cert_pem, const std::string& key_pem, std::string& err) {
    // The same verdict mtad -n gives: unparsable PEM, an encrypted key (never a passphrase prompt on
    // the terminal) or a key of another certificate is named as such.
    if (!tls_check_pair(cert_pem, key_pem, err)) return nullptr;
    ERR_clear_error();
    TlsContext ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    if (!ctx) { err = ssl_errors(); return nullptr; }
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    static const unsigned char kSidCtx[] = "mta-smtpd";
    SSL_CTX_set_session_id_context(ctx.get(), kSidCtx, sizeof kSidCtx - 1);

    std::unique_ptr<BIO, BioFree> cb(BIO_new_mem_buf(cert_pem.data(), int(cert_pem.size())));
    std::unique_ptr<X509, X509Free> leaf(cb ? PEM_read_bio_X509_AUX(cb.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!leaf || SSL_CTX_use_certificate(ctx.get(), leaf.get()) != 1) { err = "certificate: " + ssl_errors(); return nullptr; }
    while (X509* extra = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr)) {
        if (SSL_CTX_add0_chain_cert(ctx.get(), extra) != 1) {  // takes ownership on success
            X509_free(extra);
            err = "certificate chain: " + ssl_errors();
            return nullptr;
        }
    }
    ERR_clear_error();  // the loop above ends with a "no start line" error
    std::unique_ptr<BIO, BioFree> kb(BIO_new_mem_buf(key_pem.data(), int(key_pem.size())));
    std::unique_ptr<EVP_PKEY, PkeyFree> key(kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, no_passphrase, nullptr) : nullptr);
    if (!key || SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) { err = "private key: " + ssl_errors(); return nullptr; }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) { err = "private key does not match the certificate"; return nullptr; }
    return ctx;
}

TlsContext tls_context_from_files(const std::string& cert_path, const std::string& key_path, std::string& err) {
    std::string cert, key;
    if (!read_file(cert_path, cert)) { err = cert_path + ": cannot read"; return nullptr; }
    if (!read_file(key_path, key)) { err = key_path + ": cannot read"; return nullptr; }
    TlsContext ctx = tls_context_from_pem(cert, key, err);
    OPENSSL_cleanse(key.data(), key.size());
    return ctx;
}

}  // namespace mta::smtpd
