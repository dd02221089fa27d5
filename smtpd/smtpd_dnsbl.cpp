// mta-smtpd and smtpd_dnsbl_zones: once anvil has let a client in, its address is looked up in every
// zone through mta-resolver (all at once) while the greeting is held back, at most kDnsblWaitSeconds.
// The weights of the zones whose answer matches add up; at smtpd_dnsbl_threshold the client is listed,
// and its RCPTs get 554 5.7.1 naming the zones (smtpd_commands.cpp), so the refusal is logged with the
// envelope as Postfix's reject_rbl_client does. Answers that do not come (SERVFAIL, timeout, no resolver)
// count as "not listed": a broken block list never refuses mail. Clients in mynetworks or
// smtpd_dnsbl_allowlist are not looked up.
#include <cstring>

#include "common/dnsbl.h"
#include "common/log.h"
#include "smtpd/smtpd_server.h"

namespace mta::smtpd {
namespace {

constexpr std::time_t kDnsblWaitSeconds = 10;  // as Postfix's postscreen_dnsbl_timeout
constexpr uint16_t kTypeA = 1;

}  // namespace

void Server::admit(uint64_t id, UniqueFd fd, ClientInfo client) {
    const auto* sa = reinterpret_cast<const sockaddr*>(&client.addr);
    bool allowed = cfg_->in_mynetworks(sa);
    for (auto& n : cfg_->dnsbl_allowlist) allowed = allowed || n.matches(sa);
    if (cfg_->dnsbl_zones.empty() || allowed) return open_session(id, std::move(fd), std::move(client));
    if (!dns_.available()) {
        LOG_WARN("event=dnsbl_skipped client=%s reason=\"no link to mta-resolver\"", client.ip.c_str());
        return open_session(id, std::move(fd), std::move(client));
    }
    DnsblWait& w = dnsbl_waiting_[id];
    w.fd = std::move(fd);
    w.client = std::move(client);
    w.deadline = now() + kDnsblWaitSeconds;
    for (const DnsblZone& z : cfg_->dnsbl_zones) {
        std::string name = dnsbl_query_name(w.client.ip, z.zone);
        if (name.empty()) continue;
        w.pending++;
        // The zone is copied: a reload may replace the configuration before the answer comes.
        dns_.query(name, kTypeA, [this, id, z](const DnsAnswer& a) { dnsbl_answer(id, z, a); });
    }
    if (w.pending == 0) return dnsbl_done(id, "no query");
    if (!evtimer_pending(dnsbl_timer_.get(), nullptr)) {
        timeval tv{1, 0};
        event_add(dnsbl_timer_.get(), &tv);
    }
}

void Server::dnsbl_answer(uint64_t id, const DnsblZone& zone, const DnsAnswer& a) {
    auto it = dnsbl_waiting_.find(id);
    if (it == dnsbl_waiting_.end()) return;  // timed out, or stopping
    DnsblWait& w = it->second;
    if (a.rcode == kRcodeNoError) {
        for (const std::string& rec : a.records) {
            if (!dnsbl_match(zone, rec)) continue;
            w.score += zone.weight;
            if (zone.weight > 0) w.hits.push_back(zone.zone);
            LOG_DEBUG("event=dnsbl_hit client=%s zone=%s answer=%s weight=%d", w.client.ip.c_str(), zone.zone.c_str(),
                      log::safe(rec).c_str(), zone.weight);
            break;
        }
    } else if (a.rcode != kRcodeNxdomain) {
        LOG_INFO("event=dnsbl_unanswered client=%s zone=%s rcode=%llu reason=\"%s\" action=\"not listed\"",
                 w.client.ip.c_str(), zone.zone.c_str(), static_cast<unsigned long long>(a.rcode),
                 log::safe(a.text).c_str());
    }
    if (--w.pending == 0) dnsbl_done(id, "answered");
}

void Server::dnsbl_done(uint64_t id, const char* why) {
    auto it = dnsbl_waiting_.find(id);
    if (it == dnsbl_waiting_.end()) return;
    DnsblWait w = std::move(it->second);
    dnsbl_waiting_.erase(it);
    if (w.score >= cfg_->smtpd_dnsbl_threshold && !w.hits.empty()) {
        for (auto& h : w.hits) w.client.dnsbl += (w.client.dnsbl.empty() ? "" : ", ") + h;
        LOG_INFO("event=dnsbl_listed client=%s score=%d threshold=%d zones=\"%s\"", w.client.ip.c_str(), w.score,
                 cfg_->smtpd_dnsbl_threshold, w.client.dnsbl.c_str());
    } else {
        LOG_DEBUG("event=dnsbl_clear client=%s score=%d unanswered=%zu (%s)", w.client.ip.c_str(), w.score, w.pending, why);
    }
    if (dnsbl_waiting_.empty()) event_del(dnsbl_timer_.get());
    open_session(id, std::move(w.fd), std::move(w.client));
}

void Server::dnsbl_timer_cb(int, short, void* arg) {
    auto* self = static_cast<Server*>(arg);
    for (uint64_t id : overdue(self->dnsbl_waiting_, self->now(), kDnsblWaitSeconds)) {
        LOG_INFO("event=dnsbl_timeout client=%s unanswered=%zu action=\"not listed by those zones\"",
                 self->dnsbl_waiting_.at(id).client.ip.c_str(), self->dnsbl_waiting_.at(id).pending);
        self->dnsbl_done(id, "timeout");
    }
}

}  // namespace mta::smtpd
