// mta-msgauth: DKIM signing (the only process that can read the DKIM private keys) and DKIM/SPF/DMARC
// verification for mta-smtpd. Keys and the Public Suffix List are read as root; then it drops to
// msgauth_user, chrooted into <spool_dir>/msgauth, with no network socket: DNS goes to mta-resolver.
#include <event2/event.h>
#include <libpsl.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/log.h"
#include "common/role.h"
#include "msgauth/msgauth_server.h"

using namespace mta;

int main(int argc, char** argv) {
    daemon::Bootstrap b = daemon::start(Role::msgauth, argc, argv);
    msgauth::SigningKeys keys;
    if (!b.cfg.dkim_keys.empty()) {
        std::vector<ConfigError> errors;
        if (!keys.load(b.cfg.dkim_keys, b.cfg.source, errors)) {
            // mtad -n and mtad's start refuse such a configuration; a table rebuilt since then lands here.
            for (auto& e : errors) LOG_ERROR("event=config_error %s", log::safe(e.str()).c_str());
            LOG_ERROR("event=startup_failed reason=\"DKIM keys do not load\"");
            return 1;
        }
    }
    msgauth::PublicSuffixList psl;
    std::string err;
    const char* dist = psl_dist_filename();
    if (!(dist && *dist && psl.load_file(dist, err)) && !psl.load_builtin(err)) {
        LOG_ERROR("event=startup_failed reason=\"public suffix list: %s\"", log::safe(err).c_str());
        return 1;
    }
    daemon::drop_privileges_or_exit(b.cfg.msgauth_user, b.cfg.spool_dir + "/msgauth");
    EventBasePtr base = daemon::new_event_base();
    LOG_INFO("event=started user=%s dkim_keys=%zu verify=%s", b.cfg.msgauth_user.c_str(), keys.size(),
             b.cfg.msgauth_verify ? "yes" : "no");
    msgauth::Server server(base.get(), std::move(b.cfg), std::move(keys), std::move(psl), std::move(b.master));
    return event_base_dispatch(base.get()) < 0 ? 1 : 0;
}
