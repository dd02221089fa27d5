// PeerLink (see smtpd_peer_link.h).
#include "common/peer_link.h"

#include "common/log.h"

namespace mta {

PeerLink::PeerLink(event_base* base, daemon::Reaper& reaper, Role self, Role peer, OnMessage on_message, OnLost on_lost)
    : base_(base), reaper_(reaper), self_(self), peer_(peer), on_message_(std::move(on_message)), on_lost_(std::move(on_lost)) {}

void PeerLink::attach(UniqueFd fd) {
    // Retire the old link first (its requests fail below), so nothing new is sent on it.
    if (link_) reaper_.bury(std::move(link_));
    uint64_t gen = ++generation_;
    link_ = std::make_unique<ipc::Link>(
        base_, std::move(fd), self_, role_name(peer_), [this](ipc::Message& m) { on_message_(m); },
        [this, gen](bool bad, const std::string& why) {
            if (bad) daemon::malformed(peer_, why);
            if (gen != generation_) return;  // an already replaced link
            LOG_WARN("event=%s_link_closed reason=\"%s\"", role_name(peer_), log::safe(why).c_str());
            // Inside the link's own close callback: free it only after the stack unwinds.
            reaper_.bury(std::move(link_));
            fail_all("link closed");
        });
    LOG_INFO("event=%s_link_up", role_name(peer_));
    fail_all("peer restarted");
}

void PeerLink::fail_all(const char* why) {
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [reqid, who] : pending) on_lost_(who, why);
}

bool PeerLink::request(ipc::Message m, uint64_t requester, uint64_t reqid) {
    if (!link_ || !link_->open()) return false;
    m.reqid = reqid;
    pending_[reqid] = requester;
    link_->send(std::move(m));
    return true;
}

void PeerLink::notify(ipc::Message m) {
    if (link_ && link_->open()) link_->send(std::move(m));
}

std::optional<uint64_t> PeerLink::take(uint64_t reqid) {
    auto p = pending_.find(reqid);
    if (p == pending_.end()) return std::nullopt;
    uint64_t who = p->second;
    pending_.erase(p);
    return who;
}

void PeerLink::drain() {
    if (link_) link_->drain();
}

}  // namespace mta
