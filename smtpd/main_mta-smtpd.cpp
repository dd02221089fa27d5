// mta-smtpd entry point: bootstrap from the master, drop to smtpd_user chrooted into <spool>/empty,
// then serve SMTP sessions on the sockets the master passes us.
#include <event2/event.h>

#include <cstdlib>
#include <ctime>
#include <memory>

#include "common/daemon.h"
#include "common/log.h"
#include "smtpd/smtpd_server.h"

int main(int argc, char** argv) {
    using namespace mta;
    daemon::Bootstrap b = daemon::start("mta-smtpd", argc, argv);
    tzset();  // Received: dates need the zone, and /etc/localtime is gone after chroot
    std::string err;
    if (!daemon::drop_privileges(b.cfg.smtpd_user, b.cfg.spool_dir + "/empty", err)) {
        LOG_ERROR("event=privdrop_failed reason=\"%s\"", log::safe(err).c_str());
        return 1;
    }
    std::unique_ptr<event_base, decltype(&event_base_free)> base(event_base_new(), &event_base_free);
    if (!base) {
        LOG_ERROR("event=startup_failed reason=\"event_base_new\"");
        return 1;
    }
    {
        smtpd::Server server(base.get(), std::move(b.cfg), std::move(b.master));
        event_base_dispatch(base.get());
    }
    return 0;
}
