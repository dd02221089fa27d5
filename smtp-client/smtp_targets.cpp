// Address lookup for a destination: MX (RFC 5321 §5.1, null MX RFC 7505), then A and AAAA of each host.
// DNS answers are remote data relayed by the resolver: records are re-parsed and bounded here.
#include "smtp-client/smtp_targets.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>

#include "smtp-client/smtp_reply.h"

namespace mta::smtp {

using ipc::DeliveryStatus;

std::string Target::hostip() const { return host + "[" + ip + "]"; }
// A Unix socket (LMTP) has no port: "localhost[unix:/path]".
std::string Target::label() const { return ip.rfind("unix:", 0) == 0 ? hostip() : hostip() + ":" + std::to_string(port); }

bool make_target(const std::string& host, const std::string& ip, uint16_t port, Target& out) {
    out = Target{};
    out.host = host;
    out.ip = ip;
    out.port = port;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.sa);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.sa);
    if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out.salen = sizeof(sockaddr_in);
        return true;
    }
    if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out.salen = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

void TargetResolver::start(const Destination& d, Done done) {
    dest_ = d;
    done_ = std::move(done);
    if (!d.mx && is_ip_literal(d.host)) {
        lookup_hosts({});
        return;
    }
    if (!d.mx) {
        mx_secure_ = true;  // no MX step: the address answers alone decide
        lookup_hosts({d.host});
        return;
    }
    std::weak_ptr<bool> alive = alive_;
    dns_.query(d.host, kQtypeMx, [this, alive](const DnsAnswer& a) {
        if (alive.lock()) on_mx(a);
    });
}

void TargetResolver::on_mx(const DnsAnswer& a) {
    const std::string& dom = dest_.host;
    mx_secure_ = a.dnssec == uint64_t(ipc::DnssecStatus::secure);
    DnsVerdict v = classify_dns(a.rcode, a.dnssec, a.records.size(), a.text);
    if (v.kind == DnsVerdict::nxdomain)
        return fail(DeliveryStatus::bounced, "5.1.2 Host or domain name not found. Name service error for name=" +
                                                 dom + " type=MX: Host not found");
    if (v.kind == DnsVerdict::temporary)
        return fail(DeliveryStatus::deferred, "4.4.3 Host or domain name not found. Name service error for name=" +
                                                  dom + " type=MX: " + sanitize(v.why, 120));
    if (v.kind == DnsVerdict::nodata) return lookup_hosts({dom});  // no MX: the domain itself (implicit MX)
    std::vector<MxHost> mx;
    for (auto& r : a.records) {
        MxHost h;
        if (parse_mx_record(r, h)) mx.push_back(std::move(h));
    }
    if (mx.empty())
        return fail(DeliveryStatus::deferred, "4.4.3 malformed MX records for " + dom);
    if (is_null_mx(mx)) return fail(DeliveryStatus::bounced, "5.1.10 Domain does not accept mail (null MX)");
    order_mx(mx, rng_);
    if (!drop_self_and_worse(mx, cfg_.hostname))
        return fail(DeliveryStatus::bounced, "5.4.6 mail for " + dom + " loops back to myself");
    if (mx.size() > kMaxMxHosts) mx.resize(kMaxMxHosts);
    std::vector<std::string> names;
    for (auto& h : mx)
        if (std::find(names.begin(), names.end(), h.name) == names.end()) names.push_back(h.name);
    lookup_hosts(std::move(names));
}

void TargetResolver::lookup_hosts(std::vector<std::string> names) {
    hosts_.clear();
    if (names.empty()) {  // an address literal: nothing to look up
        hosts_.push_back({dest_.host, {dest_.host}});
        finish_addrs();  // may destroy *this: nothing may follow
        return;
    }
    for (auto& n : names) hosts_.push_back({n, {}});
    pending_ = int(names.size()) * 2;
    std::weak_ptr<bool> alive = alive_;
    for (std::size_t i = 0; i < hosts_.size(); i++) {
        for (uint16_t qt : {kQtypeA, kQtypeAaaa}) {
            dns_.query(hosts_[i].name, qt, [this, alive, i, qt](const DnsAnswer& a) {
                if (alive.lock()) on_addr(i, a, qt);
            });
        }
    }
}

void TargetResolver::on_addr(std::size_t idx, const DnsAnswer& a, uint16_t qtype) {
    DnsVerdict v = classify_dns(a.rcode, a.dnssec, a.records.size(), a.text);
    if (a.dnssec != uint64_t(ipc::DnssecStatus::secure)) hosts_[idx].secure = false;
    if (v.kind == DnsVerdict::temporary)
        temp_error_ = "Name service error for name=" + hosts_[idx].name + " type=" + (qtype == kQtypeA ? "A" : "AAAA") +
                      ": " + sanitize(v.why, 120);
    if (v.kind == DnsVerdict::ok) {
        std::size_t n = 0;
        for (auto& r : a.records) {
            Target t;
            if (n++ >= 16) break;  // enough addresses per host
            if (make_target(hosts_[idx].name, r, dest_.port, t)) hosts_[idx].ips.push_back(t.ip);
        }
    }
    if (--pending_ == 0) finish_addrs();
}

bool TargetResolver::is_own_address(const Target& t) const {
    for (auto& l : cfg_.smtp_listen) {
        if (l.port != t.port || l.host.empty()) continue;
        Target mine;
        if (make_target("", l.host, l.port, mine) && mine.salen == t.salen) {
            if (t.sa.ss_family == AF_INET &&
                reinterpret_cast<const sockaddr_in&>(mine.sa).sin_addr.s_addr ==
                    reinterpret_cast<const sockaddr_in&>(t.sa).sin_addr.s_addr)
                return true;
            if (t.sa.ss_family == AF_INET6 &&
                memcmp(&reinterpret_cast<const sockaddr_in6&>(mine.sa).sin6_addr,
                       &reinterpret_cast<const sockaddr_in6&>(t.sa).sin6_addr, 16) == 0)
                return true;
        }
    }
    return false;
}

void TargetResolver::finish_addrs() {
    TargetResult res;
    bool looped = false;
    for (auto& h : hosts_) {
        // IPv4 first: on many hosts IPv6 has no route, and every failed connect costs a timeout.
        std::stable_sort(h.ips.begin(), h.ips.end(),
                         [](const std::string& a, const std::string& b) {
                             return (a.find(':') == std::string::npos) > (b.find(':') == std::string::npos);
                         });
        for (auto& ip : h.ips) {
            Target t;
            if (!make_target(h.name, ip, dest_.port, t)) continue;
            t.dnssec_secure = mx_secure_ && h.secure && !is_ip_literal(h.name);
            if (dest_.mx && is_own_address(t)) { looped = true; continue; }
            bool dup = std::any_of(res.targets.begin(), res.targets.end(),
                                   [&](const Target& o) { return o.ip == t.ip; });
            if (!dup && res.targets.size() < kMaxAddressesPerAttempt) res.targets.push_back(std::move(t));
        }
    }
    if (!res.targets.empty()) {
        auto cb = std::move(done_);
        cb(std::move(res));
        return;
    }
    if (!temp_error_.empty())
        return fail(DeliveryStatus::deferred, "4.4.3 Host or domain name not found. " + temp_error_);
    if (looped) return fail(DeliveryStatus::bounced, "5.4.6 mail for " + dest_.host + " loops back to myself");
    fail(DeliveryStatus::bounced, "5.4.4 Host or domain name not found: no address records for " +
                                      (hosts_.size() == 1 ? hosts_[0].name : dest_.host));
}

void TargetResolver::fail(DeliveryStatus st, std::string text) {
    TargetResult r;
    r.status = st;
    r.text = std::move(text);
    auto cb = std::move(done_);
    cb(std::move(r));
}

}  // namespace mta::smtp
