// DnsLink: resolve_request/resolve_reply over the resolver link. Replies are validated (rcode required,
// every field well-typed); callbacks always run from the event loop, never inside query().
#include "common/dns_link.h"

#include <ctime>
#include <event2/event.h>

#include "common/log.h"
#include "common/wire/wire.h"

namespace mta {

DnsLink::DnsLink(event_base* base) : base_(base) {
    kick_.reset(event_new(base_, -1, 0, &DnsLink::on_kick, this));
    sweep_.reset(event_new(base_, -1, EV_PERSIST, &DnsLink::on_sweep, this));
    timeval tv = {5, 0};
    event_add(sweep_.get(), &tv);
}

DnsLink::~DnsLink() = default;

void DnsLink::attach(std::unique_ptr<ipc::Link> link) {
    fail_all("resolver restarted");
    link_ = std::move(link);
}

void DnsLink::on_close() {
    fail_all("resolver unavailable");
    // The Link object stays (closed) until the master hands us a new one.
}

void DnsLink::fail_all(const std::string& why) {
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) {
        DnsAnswer a;
        a.rcode = kRcodeTimeout;
        a.text = why;
        answer_later(std::move(p.cb), std::move(a));
    }
}

void DnsLink::answer_later(Callback cb, DnsAnswer a) {
    ready_.emplace_back(std::move(cb), std::move(a));
    event_active(kick_.get(), EV_TIMEOUT, 0);
}

void DnsLink::on_kick(int, short, void* arg) {
    auto* self = static_cast<DnsLink*>(arg);
    auto ready = std::move(self->ready_);
    self->ready_.clear();
    for (auto& [cb, a] : ready) cb(a);
}

void DnsLink::on_sweep(int, short, void* arg) {
    auto* self = static_cast<DnsLink*>(arg);
    time_t now = time(nullptr);
    for (auto it = self->pending_.begin(); it != self->pending_.end();) {
        if (it->second.deadline > now) {
            ++it;
            continue;
        }
        DnsAnswer a;
        a.rcode = kRcodeTimeout;
        a.text = "timeout";
        self->answer_later(std::move(it->second.cb), std::move(a));
        it = self->pending_.erase(it);
    }
}

void DnsLink::query(const std::string& name, uint16_t qtype, Callback cb) {
    if (!available()) {
        DnsAnswer a;
        a.rcode = kRcodeTimeout;
        a.text = "resolver unavailable";
        answer_later(std::move(cb), std::move(a));
        return;
    }
    uint64_t id = next_id_++;
    pending_[id] = Pending{std::move(cb), time(nullptr) + kDnsQueryTimeout};
    link_->send(wire::encode(wire::ResolveRequest{name, qtype}, id));
}

bool DnsLink::on_message(ipc::Message& m) {
    wire::ResolveReply reply;
    std::string err;
    if (!wire::decode(m, reply, err)) return false;
    DnsAnswer a{reply.rcode, reply.dnssec, std::move(reply.text), std::move(reply.records)};
    auto it = pending_.find(m.reqid);
    if (it == pending_.end()) return true;  // answered already (timed out) or from an older link
    Callback cb = std::move(it->second.cb);
    pending_.erase(it);
    cb(a);
    return true;
}

}  // namespace mta
