// TLS server contexts for STARTTLS and smtps (OpenSSL): TLS 1.2 or newer, no renegotiation, no
// compression. Built from PEM text, which mta-smtpd reads before it chroots (or the master sends).
#pragma once
#include <memory>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;

namespace mta::smtpd {

using TlsContext = std::shared_ptr<SSL_CTX>;

// Certificate chain (leaf first) and private key as PEM text; nullptr with `err` on any problem,
// including a key that does not match the certificate.
TlsContext tls_context_from_pem(const std::string& cert_pem, const std::string& key_pem, std::string& err);
// Reads both files (as root, before the chroot) and calls tls_context_from_pem.
TlsContext tls_context_from_files(const std::string& cert_path, const std::string& key_path, std::string& err);

}  // namespace mta::smtpd
