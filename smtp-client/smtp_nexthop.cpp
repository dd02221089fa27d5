// Next-hop selection rules (RFC 5321 §5, RFC 7505). Pure; DNS records are parsed defensively since the
// resolver passes on what remote name servers said.
#include "smtp-client/smtp_nexthop.h"

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>

#include "common/address.h"

namespace mta::smtp {
namespace {

bool parse_port(std::string_view s, uint16_t& port) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return false;
    port = uint16_t(v);
    return true;
}

bool valid_host(std::string_view h) { return is_ip_literal(h) || addr::valid_domain(h); }

// "[host]:port", "[host]", "host:port" or "host" (IPv6 only inside brackets).
bool parse_target(std::string_view s, uint16_t default_port, Destination& d, std::string& err) {
    d.port = default_port;
    std::string_view host;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) { err = "missing ]"; return false; }
        host = s.substr(1, close - 1);
        std::string_view rest = s.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || !parse_port(rest.substr(1), d.port))) {
            err = "bad port";
            return false;
        }
        d.mx = false;
    } else {
        auto colon = s.rfind(':');
        host = s.substr(0, colon);
        if (colon != std::string_view::npos && !parse_port(s.substr(colon + 1), d.port)) {
            err = "bad port";
            return false;
        }
        d.mx = true;
    }
    if (host.size() > 5 && addr::lower(host.substr(0, 5)) == "ipv6:") host.remove_prefix(5);
    d.host = addr::lower(host);
    if (!d.mx && is_ip_literal(d.host)) return true;
    if (d.host.empty() || !valid_host(d.host)) { err = "invalid host name"; return false; }
    if (is_ip_literal(d.host)) d.mx = false;  // an address has no MX
    return true;
}

}  // namespace

bool is_ip_literal(std::string_view host) {
    std::string h(host);
    unsigned char buf[16];
    return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

std::string Destination::key() const {
    std::string p = std::to_string(port);
    return mx ? host + ":" + p : "[" + host + "]:" + p;
}

std::optional<Destination> choose_destination(std::string_view nexthop, std::string_view relayhost,
                                              uint16_t default_port, std::string& err) {
    Destination d;
    if (nexthop.empty()) { err = "empty nexthop"; return std::nullopt; }
    if (nexthop.rfind("smtp:", 0) == 0) {  // chosen by transport_map: relayhost does not apply
        if (!parse_target(nexthop.substr(5), default_port, d, err)) {
            err = "transport_map: " + err;
            return std::nullopt;
        }
        return d;
    }
    if (nexthop.front() == '[') {
        if (!parse_target(nexthop, default_port, d, err)) { err = "nexthop: " + err; return std::nullopt; }
        return d;
    }
    if (!relayhost.empty()) {
        if (!parse_target(relayhost, default_port, d, err)) { err = "relayhost: " + err; return std::nullopt; }
        return d;
    }
    if (!parse_target(nexthop, default_port, d, err)) { err = "nexthop: " + err; return std::nullopt; }
    return d;
}

bool parse_mx_record(std::string_view rec, MxHost& out) {
    auto sp = rec.find(' ');
    if (sp == std::string_view::npos) return false;
    unsigned pref = 0;
    auto num = rec.substr(0, sp);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), pref);
    if (ec != std::errc() || p != num.data() + num.size() || pref > 65535) return false;
    std::string_view name = rec.substr(sp + 1);
    if (name == ".") {
        out = {uint16_t(pref), "."};
        return true;
    }
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    std::string lname = addr::lower(name);
    if (lname.empty() || !addr::valid_domain(lname) || lname.front() == '[') return false;
    out = {uint16_t(pref), std::move(lname)};
    return true;
}

void order_mx(std::vector<MxHost>& hosts, const std::function<uint32_t()>& rng) {
    // Random keys, then a stable sort by preference: equal preferences end up in random order.
    std::vector<std::pair<uint32_t, std::size_t>> keys;
    for (std::size_t i = 0; i < hosts.size(); i++) keys.push_back({rng(), i});
    std::sort(keys.begin(), keys.end(), [&](auto& a, auto& b) {
        if (hosts[a.second].pref != hosts[b.second].pref) return hosts[a.second].pref < hosts[b.second].pref;
        return a.first < b.first;
    });
    std::vector<MxHost> out;
    for (auto& k : keys) out.push_back(std::move(hosts[k.second]));
    hosts = std::move(out);
}

bool is_null_mx(const std::vector<MxHost>& hosts) {
    return std::any_of(hosts.begin(), hosts.end(), [](const MxHost& h) { return h.name == "."; });
}

bool drop_self_and_worse(std::vector<MxHost>& hosts, std::string_view my_hostname) {
    std::string me = addr::lower(my_hostname);
    if (!me.empty() && me.back() == '.') me.pop_back();
    int self_pref = -1;
    for (auto& h : hosts)
        if (h.name == me && (self_pref < 0 || h.pref < self_pref)) self_pref = h.pref;
    if (self_pref < 0) return !hosts.empty();
    std::erase_if(hosts, [&](const MxHost& h) { return h.pref >= self_pref; });
    return !hosts.empty();
}

DnsVerdict classify_dns(uint64_t rcode, uint64_t dnssec, std::size_t nrecords, std::string_view text) {
    if (dnssec == uint64_t(ipc::DnssecStatus::bogus))
        return {DnsVerdict::temporary, "DNSSEC validation failed"};
    if (rcode == kRcodeNoError) return {nrecords ? DnsVerdict::ok : DnsVerdict::nodata, ""};
    if (rcode == kRcodeNxdomain) return {DnsVerdict::nxdomain, "host not found"};
    std::string why = rcode == kRcodeServfail ? "SERVFAIL" : rcode == kRcodeTimeout ? "timeout" : "rcode " + std::to_string(rcode);
    if (!text.empty() && rcode != kRcodeServfail) why = std::string(text.substr(0, 100));
    return {DnsVerdict::temporary, why};
}

}  // namespace mta::smtp
