// mta-local: final delivery into Maildirs under mail_dir, as mail_owner, chrooted into mail_dir.
// Serves `deliver` requests from the queue; every message from master and queue is validated.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <event2/event.h>
#include <fcntl.h>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "common/daemon.h"
#include "common/ipc.h"
#include "common/log.h"
#include "common/role.h"
#include "common/wire/wire.h"
#include "smtp-client/local/local_agent.h"

using namespace mta;

namespace {

local::Clock wall_clock() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return {uint64_t(ts.tv_sec), uint64_t(ts.tv_nsec / 1000)};
}

class LocalDaemon final : public daemon::MasterHandler {
public:
    LocalDaemon(daemon::Bootstrap& b, UniqueFd root)
        : base_(daemon::new_event_base()), cfg_(std::move(b.cfg)), root_(std::move(root)),
          agent_(root_.get(), cfg_.hostname, uint64_t(getpid()), wall_clock), reaper_(base_.get()),
          master_(base_.get(), Role::local, std::move(b.master), *this) {}

    int run() { return event_base_dispatch(base_.get()) < 0 ? 1 : 0; }

private:
    void on_peer(Role role, uint64_t id, UniqueFd fd) override {
        if (role != Role::queue) daemon::malformed(Role::master, std::string("peer of unexpected role ") + role_name(role));
        auto link = std::make_unique<ipc::Link>(
            base_.get(), std::move(fd), Role::local, role_name(Role::queue),
            [this, id](ipc::Message& q) { on_queue(id, q); },
            [this, id](bool malformed, const std::string& why) { on_queue_closed(id, malformed, why); });
        // Replaces (and closes) an older link to the same instance; we are in the master's callback, not its.
        queues_[id] = std::move(link);
        LOG_INFO("event=peer_added role=%s instance=%llu", role_name(role), (unsigned long long)id);
    }

    void on_queue(uint64_t id, ipc::Message& m) {
        if (m.type != ipc::Type::deliver)
            daemon::malformed(Role::queue, std::string("unexpected ") + ipc::type_name(m.type));
        local::DeliverRequest req;
        std::string err;
        if (!local::parse_deliver(m, req, err)) daemon::malformed(Role::queue, err);
        std::vector<local::RcptResult> results = agent_.deliver(req);
        auto it = queues_.find(id);
        if (it != queues_.end()) it->second->send(local::build_result(req.reqid, req.msgid, results));
    }

    void on_queue_closed(uint64_t id, bool malformed, const std::string& why) {
        if (malformed) daemon::malformed(Role::queue, why);
        LOG_INFO("event=peer_closed role=%s instance=%llu reason=\"%s\"", role_name(Role::queue),
                 (unsigned long long)id, log::safe(why).c_str());
        auto it = queues_.find(id);
        if (it == queues_.end()) return;
        reaper_.bury(std::move(it->second));  // inside the link's own callback: freed from the loop
        queues_.erase(it);
    }

    void on_stop() override {
        // Deliveries are synchronous, so nothing is in flight: flush replies and leave.
        LOG_INFO("event=stopping");
        for (auto& [id, link] : queues_) link->drain();
        exit(0);
    }

    void on_reload(Config c, const wire::Config&) override {
        if (c.mail_dir != cfg_.mail_dir || c.mail_owner != cfg_.mail_owner)
            LOG_WARN("event=config_needs_restart keys=mail_dir,mail_owner");
        agent_.set_hostname(c.hostname);
        cfg_ = std::move(c);
    }

    EventBasePtr base_;
    Config cfg_;
    UniqueFd root_;
    local::Agent agent_;
    std::map<uint64_t, std::unique_ptr<ipc::Link>> queues_;
    daemon::Reaper reaper_;
    daemon::MasterLink master_;
};

// chdir into mail_dir first so both cases work with relative paths: as root the chroot is ".",
// as non-root (development) the drop is skipped and we simply stay in mail_dir.
UniqueFd enter_mail_dir(const Config& cfg) {
    umask(077);
    if (chdir(cfg.mail_dir.c_str()) != 0) {
        LOG_ERROR("event=startup_failed reason=\"chdir mail_dir\" dir=%s error=\"%s\"",
                  log::safe(cfg.mail_dir).c_str(), strerror(errno));
        exit(1);
    }
    daemon::drop_privileges_or_exit(cfg.mail_owner, ".");
    UniqueFd root(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) {
        LOG_ERROR("event=startup_failed reason=\"open mail_dir\" error=\"%s\"", strerror(errno));
        exit(1);
    }
    return root;
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Bootstrap b = daemon::start(Role::local, argc, argv);
    UniqueFd root = enter_mail_dir(b.cfg);
    LOG_INFO("event=started mail_dir=%s", log::safe(b.cfg.mail_dir).c_str());
    LocalDaemon d(b, std::move(root));
    return d.run();
}
