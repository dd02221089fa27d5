// mta-smtpd entry point: bootstrap from the master, drop to smtpd_user chrooted into <spool>/empty,
// then serve SMTP sessions on the sockets the master passes us.
#include <event2/event.h>

#include <cstdlib>
#include <ctime>
#include <memory>
#include <utility>

#include "common/daemon.h"
#include "common/log.h"
#include "smtpd/smtpd_server.h"

int main(int argc, char** argv) {
    using namespace mta;
    daemon::Bootstrap b = daemon::start(Role::smtpd, argc, argv);
    tzset();  // Received: dates need the zone, and /etc/localtime is gone after chroot
    std::string err;
    // Only root can read the key and the auth table, and their paths are gone after the chroot.
    auto res = std::make_shared<smtpd::Resources>();
    if (!b.cfg.tls_cert.empty() || !b.cfg.tls_key.empty()) {
        res->tls = smtpd::tls_context_from_files(b.cfg.tls_cert, b.cfg.tls_key, err);
        if (!res->tls)  // Postfix-like: run without TLS (no STARTTLS, no smtps, no AUTH) and say why
            LOG_ERROR("event=tls_disabled reason=\"%s\"", log::safe(err).c_str());
    }
    for (auto [path, slot] : {std::pair{&b.cfg.auth_users, &res->auth_users},
                              std::pair{&b.cfg.local_recipients, &res->local_recipients},
                              std::pair{&b.cfg.alias_map, &res->alias_map},
                              std::pair{&b.cfg.virtual_map, &res->virtual_map}}) {
        if (path->empty()) continue;
        std::shared_ptr<const table::Table> t = table::Table::open(*path, err);
        if (!t) {  // refusing every recipient, or every login, is safer than guessing
            LOG_ERROR("event=table_open_failed path=\"%s\" reason=\"%s\"", log::safe(*path).c_str(),
                      log::safe(err).c_str());
            return 1;
        }
        *slot = std::move(t);
    }
    daemon::drop_privileges_or_exit(b.cfg.smtpd_user, b.cfg.spool_dir + "/empty");
    EventBasePtr base = daemon::new_event_base();
    {
        smtpd::Server server(base.get(), std::move(b.cfg), std::move(res), std::move(b.master));
        event_base_dispatch(base.get());
    }
    return 0;
}
