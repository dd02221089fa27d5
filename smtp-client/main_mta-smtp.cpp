// mta-smtp: outbound SMTP delivery. Bootstraps from the master on fd 3, prepares the TLS client context,
// drops to cfg.smtp_user chrooted in <spool_dir>/empty, then serves `deliver` requests from the queue.
#include <cstdlib>
#include <event2/event.h>
#include <memory>
#include <openssl/ssl.h>

#include "common/daemon.h"
#include "common/log.h"
#include "smtp-client/smtp_agent.h"

using namespace mta;

namespace {

struct SslCtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

// The client TLS context: TLS 1.2 or newer, no default verification (levels may/encrypt); DANE-enabled
// so that sessions at level dane can add their TLSA records; smtp_tls_ca_file loaded (now, before the
// chroot) for the WebPKI check that MTA-STS enforce requires of MX certificates.
std::unique_ptr<SSL_CTX, SslCtxFree> make_tls_context(const std::string& ca_file) {
    std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return nullptr;
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    // DANE (RFC 7672) per connection; the CA store is only consulted where an MTA-STS policy asks for it.
    if (SSL_CTX_dane_enable(ctx.get()) <= 0) return nullptr;
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1)
        LOG_WARN("event=ca_file_unavailable file=%s reason=\"MTA-STS enforce deliveries will defer\"",
                 log::safe(ca_file).c_str());
    // Touch everything OpenSSL loads lazily while the filesystem is still visible (before chroot).
    if (SSL* probe = SSL_new(ctx.get())) SSL_free(probe);
    return ctx;
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Bootstrap b = daemon::start(Role::smtp, argc, argv);
    auto tls = make_tls_context(b.cfg.smtp_tls_ca_file);
    if (!tls) LOG_WARN("event=tls_unavailable reason=\"cannot create TLS client context\"");
    daemon::drop_privileges_or_exit(b.cfg.smtp_user, b.cfg.spool_dir + "/empty");
    EventBasePtr base = daemon::new_event_base();
    smtp::Agent agent(base.get(), std::move(b.cfg), std::move(b.master), tls.get());
    LOG_INFO("event=started role=%s", role_name(Role::smtp));
    event_base_dispatch(base.get());
    return 0;
}
