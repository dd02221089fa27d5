// The role skeleton: master link dispatch, reload, the malformed-message exit and the reaper.
#include "common/role.h"

#include <cstdlib>
#include <event2/event.h>

#include "common/daemon.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/wire/wire.h"

namespace mta::daemon {

void malformed(std::string_view peer, const std::string& why) {
    std::string p(peer);
    LOG_ERROR("event=malformed_message peer=%s reason=\"%s\" action=exit", log::safe(p).c_str(), log::safe(why).c_str());
    exit(2);
}

void malformed(Role peer, const std::string& why) { malformed(role_name(peer), why); }

void MasterHandler::on_listen(const std::string&, UniqueFd) { malformed(Role::master, "listen sent to a role without listeners"); }

void MasterHandler::on_request(ipc::Message& m) {
    malformed(Role::master, std::string("unexpected message ") + ipc::type_name(m.type));
}

void MasterHandler::on_master_closed() { exit(0); }

MasterLink::MasterLink(event_base* base, Role self, UniqueFd fd, MasterHandler& handler) : handler_(handler) {
    link_ = std::make_unique<ipc::Link>(
        base, std::move(fd), self, role_name(Role::master), [this](ipc::Message& m) { dispatch(m); },
        [this](bool bad, const std::string& why) {
            if (bad) malformed(Role::master, why);
            LOG_INFO("event=master_closed reason=\"%s\"", log::safe(why).c_str());
            handler_.on_master_closed();
        },
        /*peer_hello_seen=*/true);
}

void MasterLink::dispatch(ipc::Message& m) {
    std::string err;
    switch (m.type) {
    case ipc::Type::peer: return peer(m);
    case ipc::Type::config: return reload(m);
    case ipc::Type::stop: {
        wire::Stop stop;
        if (!wire::decode(m, stop, err)) malformed(Role::master, "stop: " + err);
        return handler_.on_stop();
    }
    case ipc::Type::loglevel: {
        wire::LogLevel level;
        if (!wire::decode(m, level, err) || !apply_loglevel(m)) malformed(Role::master, "loglevel without a valid level");
        LOG_INFO("event=loglevel level=%s", level.level.c_str());
        return;
    }
    case ipc::Type::listen: {
        wire::Listen listen;
        if (!wire::decode(m, listen, err)) malformed(Role::master, "listen: " + err);
        return handler_.on_listen(listen.kind, std::move(listen.fd));
    }
    case ipc::Type::stats_request: {
        wire::StatsRequest req;
        if (!wire::decode(m, req, err)) malformed(Role::master, "stats_request: " + err);
        wire::StatsReply reply{metrics::registry().collect()};
        if (reply.samples.size() > wire::kMaxStatsSamples) reply.samples.resize(wire::kMaxStatsSamples);
        link_->send(wire::encode(reply, m.reqid));
        return;
    }
    default: return handler_.on_request(m);
    }
}

void MasterLink::peer(ipc::Message& m) {
    wire::Peer p;
    std::string err;
    if (!wire::decode(m, p, err)) malformed(Role::master, "peer: " + err);
    auto role = parse_role(p.role);
    if (!role || *role == Role::master) malformed(Role::master, "peer of unknown role " + p.role);
    handler_.on_peer(*role, p.instance, std::move(p.fd));
}

// A configuration that does not parse is refused as a whole; the running one stays.
void MasterLink::reload(const ipc::Message& m) {
    wire::Config conf;
    std::string err;
    if (!wire::decode(m, conf, err)) malformed(Role::master, "config: " + err);
    Config next;
    std::vector<ConfigError> errors;
    if (!parse_config(conf.text, conf.name, next, errors)) {
        for (auto& e : errors) LOG_ERROR("event=config_error %s", log::safe(e.str()).c_str());
        LOG_ERROR("event=reload_failed reason=\"keeping the old configuration\"");
        return;
    }
    log::configure(next.log_level, next.log_format);
    handler_.on_reload(std::move(next), conf);
    LOG_INFO("event=reloaded");
}

Reaper::Reaper(event_base* base, std::function<void()> after_round)
    : ev_(event_new(base, -1, 0, &Reaper::on_round, this)), after_round_(std::move(after_round)) {}

void Reaper::later(std::function<void()> fn) {
    tasks_.push_back(std::move(fn));
    poke();
}

void Reaper::poke() { event_active(ev_.get(), EV_TIMEOUT, 0); }

void Reaper::on_round(int, short, void* arg) {
    auto* self = static_cast<Reaper*>(arg);
    // Swapped out first: what is freed or run here may bury or schedule more (the next round).
    std::vector<std::shared_ptr<void>> dead;
    dead.swap(self->dead_);
    dead.clear();
    std::vector<std::function<void()>> tasks;
    tasks.swap(self->tasks_);
    for (auto& t : tasks) t();
    if (self->after_round_) self->after_round_();
}

}  // namespace mta::daemon
