// mta-resolver: DNS (libunbound, DNSSEC-validating) for the other MTA roles. Started by mtad with the
// control link on fd 3; builds its libunbound context while it can still read trust anchors, then
// drops to cfg.resolver_user chrooted in <spool_dir>/resolver before it handles any request.
#include <cstdlib>
#include <event2/event.h>
#include <memory>
#include <openssl/ssl.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/log.h"
#include "resolver/dns_context.h"
#include "resolver/mta_sts_fetch.h"
#include "resolver/server.h"

namespace {

struct SslCtxDeleter {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

}  // namespace

int main(int argc, char** argv) {
    using namespace mta;
    auto boot = daemon::start(Role::resolver, argc, argv);
    std::string err;
    auto ctx = resolver::make_context(resolver::dns_settings(boot.cfg), err);
    if (!ctx) {
        LOG_ERROR("event=startup_failed reason=\"%s\"", log::safe(err).c_str());
        return 1;
    }
    // MTA-STS: the CA store is read now, while the filesystem is visible; the policy cache lives in
    // our own writable directory (the chroot root once privileges are dropped).
    std::unique_ptr<SSL_CTX, SslCtxDeleter> https(resolver::make_sts_https_context(boot.cfg.smtp_tls_ca_file, err));
    if (!https) LOG_WARN("event=mta_sts_https_unavailable reason=\"%s\"", log::safe(err).c_str());
    std::string sts_dir = geteuid() == 0 ? "/mta-sts" : boot.cfg.spool_dir + "/resolver/mta-sts";
    daemon::drop_privileges_or_exit(boot.cfg.resolver_user, boot.cfg.spool_dir + "/resolver");
    EventBasePtr base = daemon::new_event_base();
    resolver::Server server(base.get(), std::move(ctx), boot.cfg);
    server.enable_mta_sts(https.get(), sts_dir);
    if (!server.start(err)) {
        LOG_ERROR("event=startup_failed reason=\"%s\"", log::safe(err).c_str());
        return 1;
    }
    server.attach_master(std::move(boot.master));
    LOG_INFO("event=started user=%s", boot.cfg.resolver_user.c_str());
    event_base_dispatch(base.get());
    return 0;
}
