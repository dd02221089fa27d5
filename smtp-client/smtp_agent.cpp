// Agent: message dispatch for mta-smtp. Validates every message from master, queue and resolver;
// anything malformed is fatal (exit 2: the master restarts us and the queue re-schedules our work).
#include "smtp-client/smtp_agent.h"

#include <cstdlib>
#include <event2/event.h>

#include "common/log.h"
#include "common/wire/wire.h"

namespace mta::smtp {

Agent::Agent(event_base* base, Config cfg, UniqueFd master, SSL_CTX* tls)
    : base_(base), cfg_(std::move(cfg)), tls_(tls), dns_(base), rng_(std::random_device{}()),
      stop_timer_(evtimer_new(base, &Agent::on_stop_timer, this)), master_(base, Role::smtp, std::move(master), *this) {
    env_.base = base_;
    env_.cfg = &cfg_;
    env_.dns = &dns_;
    env_.cache = &cache_;
    env_.tls = tls_;
    env_.rng = [this] { return uint32_t(rng_()); };
    env_.rua_cache = &rua_cache_;
}

Agent::~Agent() = default;

void Agent::on_peer(Role role, uint64_t instance, UniqueFd fd) {
    std::string desc = std::string(role_name(role)) + "#" + std::to_string(instance);
    if (role == Role::resolver) {
        dns_.attach(std::make_unique<ipc::Link>(
            base_, std::move(fd), Role::smtp, desc,
            [this](ipc::Message& r) {
                if (!dns_.on_message(r)) daemon::malformed(Role::resolver, "bad resolve_reply");
            },
            [this](bool malformed, const std::string& why) {
                if (malformed) daemon::malformed(Role::resolver, why);
                LOG_WARN("event=resolver_link_closed reason=\"%s\"", log::safe(why).c_str());
                dns_.on_close();
            }));
        LOG_INFO("event=peer_attached peer=%s", desc.c_str());
        return;
    }
    if (role != Role::queue) daemon::malformed(Role::master, std::string("peer of unexpected role ") + role_name(role));
    uint64_t inst = instance, gen = next_generation_++;
    on_queue_close(inst, 0, false);  // a replacement link: work from the old one is void
    QueueConn& q = queues_[inst];
    q.generation = gen;
    q.link = std::make_unique<ipc::Link>(
        base_, std::move(fd), Role::smtp, desc, [this, inst, gen](ipc::Message& r) { on_queue(inst, gen, r); },
        [this, inst, gen](bool malformed, const std::string& why) {
            if (malformed) daemon::malformed(Role::queue, why);
            LOG_WARN("event=queue_link_closed reason=\"%s\"", log::safe(why).c_str());
            on_queue_close(inst, gen, false);
        });
    LOG_INFO("event=peer_attached peer=%s", desc.c_str());
}

void Agent::on_queue(uint64_t instance, uint64_t generation, ipc::Message& m) {
    if (m.type != ipc::Type::deliver)
        daemon::malformed(Role::queue, std::string("unexpected ") + ipc::type_name(m.type));
    Job job;
    std::string err;
    if (!parse_deliver(m, job, err)) daemon::malformed(Role::queue, "deliver: " + err);
    uint64_t id = next_delivery_++;
    Active& a = active_[id];
    a.queue_instance = instance;
    a.queue_generation = generation;
    a.reqid = m.reqid;
    a.delivery = std::make_unique<Delivery>(env_, std::move(job), [this, id](Delivery&) { on_delivery_done(id); });
    a.delivery->start();  // may complete (and erase `a`) at once
}

void Agent::on_delivery_done(uint64_t id) {
    auto it = active_.find(id);
    if (it == active_.end()) return;
    // Out of active_ before the send: a send to a queue that has just died closes the link, and
    // on_queue_close then erases every delivery of that link (kill matrix: a use after free here).
    Active done = std::move(it->second);
    active_.erase(it);
    auto q = queues_.find(done.queue_instance);
    if (q != queues_.end() && q->second.generation == done.queue_generation && q->second.link &&
        q->second.link->open())
        q->second.link->send(make_result(done.delivery->job(), done.reqid));
    done.delivery.reset();  // the last use: we are at the end of the delivery's own callback
    maybe_exit();
}

void Agent::on_queue_close(uint64_t instance, uint64_t generation, bool) {
    // generation 0 = "whatever link this instance had" (replacement); else only that link's work.
    auto q = queues_.find(instance);
    if (q == queues_.end()) return;
    if (generation != 0 && q->second.generation != generation) return;
    uint64_t gen = q->second.generation;
    std::size_t aborted = 0;
    for (auto it = active_.begin(); it != active_.end();) {
        if (it->second.queue_instance == instance && it->second.queue_generation == gen) {
            it = active_.erase(it);  // the queue re-schedules these recipients itself
            aborted++;
        } else {
            ++it;
        }
    }
    if (aborted) LOG_WARN("event=deliveries_aborted count=%zu reason=\"queue link closed\"", aborted);
    maybe_exit();
}

void Agent::on_reload(Config next, const wire::Config&) { cfg_ = std::move(next); }

void Agent::on_stop() {
    if (stopping_) return;
    stopping_ = true;
    LOG_INFO("event=stopping in_flight=%zu", active_.size());
    cache_.close_all();
    timeval tv = {kStopGraceSeconds, 0};
    evtimer_add(stop_timer_.get(), &tv);
    maybe_exit();
}

void Agent::maybe_exit() {
    if (!stopping_ || !active_.empty()) return;
    for (auto& [i, q] : queues_)
        if (q.link) q.link->drain();
    exit(0);
}

void Agent::on_stop_timer(int, short, void* arg) {
    auto* self = static_cast<Agent*>(arg);
    LOG_WARN("event=stop_timeout abandoned=%zu", self->active_.size());
    for (auto& [i, q] : self->queues_)
        if (q.link) q.link->drain();
    exit(0);
}

}  // namespace mta::smtp
