// mta-queue: the queue manager. Runs as queue_user chrooted into <spool_dir>/queue; opens the LMDB queue
// and serves smtpd (new mail) and the deliverers (smtp, local) at once, while recovery checks what earlier
// runs left in slices (queue-manager/recovery.h).
#include <cerrno>
#include <cstring>
#include <event2/event.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/log.h"
#include "queue-manager/server.h"
#include "queue-manager/store.h"

using namespace mta;

int main(int argc, char** argv) {
    auto b = daemon::start(Role::queue, argc, argv);
    // Relative paths from here on: "db" and "body" resolve inside the queue dir both with and without
    // chroot; the chroot itself is "." so it works whether spool_dir was given relative or absolute.
    const std::string dir = queue_dir(b.cfg);
    if (chdir(dir.c_str()) != 0) {
        LOG_ERROR("event=startup_failed reason=\"chdir %s: %s\"", log::safe(dir).c_str(), strerror(errno));
        return 1;
    }
    auto time = std::make_shared<queue::QueueTime>();  // reads /proc: before the chroot
    daemon::drop_privileges_or_exit(b.cfg.queue_user, ".");
    std::string err;
    queue::Store store;
    if (mkdir("body", 0700) != 0 && errno != EEXIST) err = std::string("mkdir body: ") + strerror(errno);
    if (!err.empty() || !store.open("db", err)) {
        // Paths in err are relative to the queue dir: name it, so the log line says which file.
        LOG_ERROR("event=startup_failed queue_dir=%s reason=\"%s\"", log::safe(dir).c_str(), log::safe(err).c_str());
        return 1;
    }
    // The queue's time goes on from where the last run left it (queue-manager/clock.h).
    store.for_each_state(queue::QueueTime::kStateKey, [&](std::string_view key, std::string_view value) {
        if (key != queue::QueueTime::kStateKey) return;
        if (!time->restore(value)) LOG_WARN("event=state_unreadable key=%s", std::string(key).c_str());
    });
    if (int64_t step = time->take_step())
        LOG_WARN("event=clock_step seconds=%lld offset=%lld reason=\"the wall clock jumped while the queue was stopped\"",
                 (long long)step, (long long)time->offset());
    EventBasePtr base = daemon::new_event_base();
    queue::QueueServer server(base.get(), b.cfg, store, queue::system_clock(time));
    if (!server.start(err)) {
        LOG_ERROR("event=startup_failed reason=\"%s\"", log::safe(err).c_str());
        return 1;
    }
    server.attach_master(std::move(b.master));
    event_base_dispatch(base.get());
    return 0;
}
