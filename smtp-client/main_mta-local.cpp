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
#include "common/wire/wire.h"
#include "smtp-client/local_agent.h"

using namespace mta;

namespace {

using EventBase = std::unique_ptr<event_base, decltype(&event_base_free)>;

[[noreturn]] void die_malformed(const char* from, const std::string& why) {
    LOG_ERROR("event=malformed_message from=%s reason=\"%s\"", from, log::safe(why).c_str());
    exit(2);
}

local::Clock wall_clock() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return {uint64_t(ts.tv_sec), uint64_t(ts.tv_nsec / 1000)};
}

class LocalDaemon {
public:
    LocalDaemon(daemon::Bootstrap& b, UniqueFd root)
        : base_(event_base_new(), &event_base_free), cfg_(std::move(b.cfg)), root_(std::move(root)),
          agent_(root_.get(), cfg_.hostname, uint64_t(getpid()), wall_clock) {
        if (!base_) { LOG_ERROR("event=startup_failed reason=\"event_base_new\""); exit(1); }
        master_ = std::make_unique<ipc::Link>(
            base_.get(), std::move(b.master), "local", "master", [this](ipc::Message& m) { on_master(m); },
            [](bool malformed, const std::string& why) {
                if (malformed) die_malformed("master", why);
                LOG_INFO("event=master_closed reason=\"%s\"", log::safe(why).c_str());
                exit(0);
            },
            /*peer_hello_seen=*/true);
    }

    int run() { return event_base_dispatch(base_.get()) < 0 ? 1 : 0; }

private:
    void on_master(ipc::Message& m) {
        switch (m.type) {
        case ipc::Type::peer: return add_peer(m);
        case ipc::Type::stop: return stop();
        case ipc::Type::config: return reload(m);
        case ipc::Type::loglevel:
            if (!daemon::apply_loglevel(m)) die_malformed("master", "bad loglevel");
            return;
        default: die_malformed("master", std::string("unexpected ") + ipc::type_name(m.type));
        }
    }

    void add_peer(ipc::Message& m) {
        wire::Peer peer;
        std::string why;
        if (!wire::decode(m, peer, why) || peer.role != "queue") die_malformed("master", "bad peer message");
        uint64_t id = peer.instance;
        auto link = std::make_unique<ipc::Link>(
            base_.get(), std::move(peer.fd), "local", "queue", [this, id](ipc::Message& q) { on_queue(id, q); },
            [this, id](bool malformed, const std::string& why) { on_queue_closed(id, malformed, why); });
        queues_[id] = std::move(link);  // replaces (and closes) an older link to the same instance
        LOG_INFO("event=peer_added role=queue instance=%llu", (unsigned long long)id);
    }

    void on_queue(uint64_t id, ipc::Message& m) {
        if (m.type != ipc::Type::deliver) die_malformed("queue", std::string("unexpected ") + ipc::type_name(m.type));
        local::DeliverRequest req;
        std::string err;
        if (!local::parse_deliver(m, req, err)) die_malformed("queue", err);
        std::vector<local::RcptResult> results = agent_.deliver(req);
        auto it = queues_.find(id);
        if (it != queues_.end()) it->second->send(local::build_result(req.reqid, req.msgid, results));
    }

    void on_queue_closed(uint64_t id, bool malformed, const std::string& why) {
        if (malformed) die_malformed("queue", why);
        LOG_INFO("event=peer_closed role=queue instance=%llu reason=\"%s\"", (unsigned long long)id,
                 log::safe(why).c_str());
        auto it = queues_.find(id);
        if (it == queues_.end()) return;
        // We are inside the link's own callback: free it from the loop, not from here.
        graveyard_.push_back(std::move(it->second));
        queues_.erase(it);
        timeval now{0, 0};
        event_base_once(base_.get(), -1, EV_TIMEOUT, &LocalDaemon::bury, this, &now);
    }

    static void bury(evutil_socket_t, short, void* arg) { static_cast<LocalDaemon*>(arg)->graveyard_.clear(); }

    void stop() {
        // Deliveries are synchronous, so nothing is in flight: flush replies and leave.
        LOG_INFO("event=stopping");
        for (auto& [id, link] : queues_) link->drain();
        exit(0);
    }

    void reload(ipc::Message& m) {
        wire::Config conf;
        if (std::string why; !wire::decode(m, conf, why)) die_malformed("master", "config: " + why);
        Config c;
        std::vector<ConfigError> errors;
        if (!parse_config(conf.text, conf.name, c, errors)) {
            for (auto& e : errors) LOG_ERROR("event=config_error %s", log::safe(e.str()).c_str());
            return;  // keep running with the old configuration
        }
        if (c.mail_dir != cfg_.mail_dir || c.mail_owner != cfg_.mail_owner)
            LOG_WARN("event=config_needs_restart keys=mail_dir,mail_owner");
        log::Level l;
        if (log::parse_level(c.log_level, l)) log::set_level(l);
        agent_.set_hostname(c.hostname);
        cfg_ = std::move(c);
        LOG_INFO("event=config_reloaded");
    }

    EventBase base_;
    Config cfg_;
    UniqueFd root_;
    local::Agent agent_;
    std::unique_ptr<ipc::Link> master_;
    std::map<uint64_t, std::unique_ptr<ipc::Link>> queues_;
    std::vector<std::unique_ptr<ipc::Link>> graveyard_;
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
    std::string err;
    if (!daemon::drop_privileges(cfg.mail_owner, ".", err)) {
        LOG_ERROR("event=privdrop_failed reason=\"%s\"", log::safe(err).c_str());
        exit(1);
    }
    UniqueFd root(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) {
        LOG_ERROR("event=startup_failed reason=\"open mail_dir\" error=\"%s\"", strerror(errno));
        exit(1);
    }
    return root;
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Bootstrap b = daemon::start("mta-local", argc, argv);
    UniqueFd root = enter_mail_dir(b.cfg);
    LOG_INFO("event=started mail_dir=%s", log::safe(b.cfg.mail_dir).c_str());
    LocalDaemon d(b, std::move(root));
    return d.run();
}
