// anvil bookkeeping for mtad: open connections per client and per smtpd link, and the rate windows
// (see anvil.h).
#include "master/anvil.h"

namespace mta::master {

Anvil::Anvil(std::time_t window, std::size_t max_clients, std::size_t max_per_link)
    : max_clients_(max_clients), max_per_link_(max_per_link), rate_(window, max_clients), auth_(window, max_clients) {}

bool Anvil::connect(uint64_t link, uint64_t conn, const std::string& ip, bool exempt, std::time_t now,
                    const Limits& limits, Verdict& out) {
    auto& conns = links_[link];
    if (conns.count(conn)) return false;
    out = Verdict{};
    out.auth_failures = exempt ? 0 : auth_.count(ip, now);
    // Every attempt counts against the rate, refused ones too: a client that keeps hammering stays out.
    if (limits.rate != 0 && !exempt) out.rate = rate_.hit(ip, now);
    auto it = open_.find(ip);
    uint64_t now_open = it == open_.end() ? 0 : it->second;
    if (limits.connections != 0 && !exempt && now_open >= limits.connections) {
        out.result = Result::refuse_concurrency;
        out.concurrent = now_open;
    } else if (limits.rate != 0 && !exempt && out.rate > limits.rate) {
        out.result = Result::refuse_rate;
        out.concurrent = now_open;
    }
    if (out.result != Result::allow) {
        refused_++;
        if (conns.empty()) links_.erase(link);
        return true;
    }
    out.concurrent = now_open + 1;
    // Past the caps the connection is allowed but not tracked (fail open): memory stays bounded.
    if (conns.size() >= max_per_link_ || (it == open_.end() && open_.size() >= max_clients_)) {
        if (conns.empty()) links_.erase(link);
        return true;
    }
    conns.emplace(conn, ip);
    open_[ip] = now_open + 1;
    open_total_++;
    return true;
}

void Anvil::release(const std::string& ip) {
    auto it = open_.find(ip);
    if (it == open_.end()) return;
    if (--it->second == 0) open_.erase(it);
    open_total_--;
}

void Anvil::disconnect(uint64_t link, uint64_t conn) {
    auto l = links_.find(link);
    if (l == links_.end()) return;
    auto c = l->second.find(conn);
    if (c == l->second.end()) return;
    release(c->second);
    l->second.erase(c);
    if (l->second.empty()) links_.erase(l);
}

void Anvil::drop_link(uint64_t link) {
    auto l = links_.find(link);
    if (l == links_.end()) return;
    for (auto& [conn, ip] : l->second) release(ip);
    links_.erase(l);
}

uint64_t Anvil::auth_fail(const std::string& ip, bool exempt, std::time_t now, const Limits& limits) {
    if (exempt || limits.auth_failures == 0) return 0;
    return auth_.hit(ip, now);
}

uint64_t Anvil::concurrent(const std::string& ip) const {
    auto it = open_.find(ip);
    return it == open_.end() ? 0 : it->second;
}

Anvil::Totals Anvil::totals() const { return Totals{open_.size(), open_total_, refused_}; }

}  // namespace mta::master
