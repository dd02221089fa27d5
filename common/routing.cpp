// Recipient domain -> delivery role, next hop and TLS level (see routing.h). Table values are admin
// data checked by mtamap at build time; they are parsed again here so that a hand-made or damaged
// table defers mail instead of misrouting it.
#include "common/routing.h"

#include <arpa/inet.h>
#include <algorithm>
#include <charconv>
#include <functional>

#include "common/address.h"
#include "common/text.h"

namespace mta {
namespace {

bool ip_literal(const std::string& h) {
    unsigned char buf[16];
    return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool parse_port(std::string_view s) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() && v > 0 && v <= 65535;
}

// The SMTP next-hop forms mta-smtp accepts (smtp-client/smtp_nexthop.cpp parse_target).
bool check_smtp_nexthop(std::string_view s, std::string& err) {
    std::string host;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) { err = "missing ]"; return false; }
        host = addr::lower(s.substr(1, close - 1));
        std::string_view rest = s.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || !parse_port(rest.substr(1)))) { err = "bad port"; return false; }
        if (host.rfind("ipv6:", 0) == 0) host.erase(0, 5);
    } else {
        auto colon = s.rfind(':');
        host = addr::lower(s.substr(0, colon));
        if (colon != std::string_view::npos && !parse_port(s.substr(colon + 1))) { err = "bad port"; return false; }
    }
    if (host.empty() || !(ip_literal(host) || addr::valid_domain(host))) { err = "invalid host name"; return false; }
    return true;
}

// The LMTP next hops mta-smtp accepts (smtp-client/lmtp_nexthop.cpp), the same as local_transport.
bool check_lmtp_nexthop(std::string_view v, std::string& err) {
    if (v.rfind("lmtp:unix:", 0) == 0) {
        if (!valid_socket_path(v.substr(10))) {
            err = "expected lmtp:unix:/absolute/socket/path";
            return false;
        }
        return true;
    }
    auto close = v.find("]:");
    if (v.rfind("lmtp:[", 0) != 0 || close == std::string_view::npos) {
        err = "expected lmtp:unix:/path or lmtp:[IP address]:port";
        return false;
    }
    if (!ip_literal(std::string(v.substr(6, close - 6)))) { err = "LMTP host must be an IP address"; return false; }
    if (!parse_port(v.substr(close + 2))) { err = "expected a port 1..65535"; return false; }
    return true;
}

// "C.S.D text" with class C = `cls`, subject and detail 1-3 digits (RFC 3463); text printable ASCII.
bool check_status_text(std::string_view v, char cls, std::string& err) {
    auto digits = [&](std::size_t& i) {
        std::size_t b = i;
        while (i < v.size() && i - b < 4 && v[i] >= '0' && v[i] <= '9') i++;
        return i - b >= 1 && i - b <= 3;
    };
    std::size_t i = 2;
    bool ok = v.size() >= 5 && v[0] == cls && v[1] == '.' && digits(i) && i < v.size() && v[i++] == '.' && digits(i) &&
              (i == v.size() || v[i] == ' ');
    if (!ok) {
        err = std::string("expected an enhanced status code ") + cls + ".x.y, then optional text";
        return false;
    }
    if (v.size() > 300) { err = "text too long"; return false; }
    for (char c : v)
        if (c < 0x20 || c > 0x7e) { err = "text must be printable ASCII"; return false; }
    return true;
}

}  // namespace

Route retry_route(std::string text, std::string transport) {
    Route r;
    r.role = "retry";
    r.text = std::move(text);
    r.transport = std::move(transport);
    return r;
}

bool valid_domain_key(std::string_view key) {
    if (key == "*") return true;
    bool parent = !key.empty() && key.front() == '.';
    if (parent) key.remove_prefix(1);
    if (key.empty() || (parent && key.front() == '[')) return false;
    return addr::valid_domain(key, true);  // also an address literal such as "[192.0.2.1]"
}

std::optional<std::pair<std::string, std::string>> lookup_domain(const TableLookup& table, std::string_view domain,
                                                                 bool wildcard) {
    if (!table) return std::nullopt;
    std::string key(domain);
    if (!key.empty()) {
        if (auto v = table(key)) return std::make_pair(key, *v);
        if (key.front() != '[') {
            for (std::size_t dot = key.find('.', 1); dot != std::string::npos; dot = key.find('.', dot + 1)) {
                std::string parent = key.substr(dot);
                if (parent.size() < 2) break;
                if (auto v = table(parent)) return std::make_pair(parent, *v);
            }
        }
    }
    if (wildcard)
        if (auto v = table("*")) return std::make_pair(std::string("*"), *v);
    return std::nullopt;
}

namespace {

// "name=value name=value ...": calls fn for each setting (whitespace-separated); stops at the first false.
bool for_each_setting(std::string_view value, const std::function<bool(std::string_view, std::string_view)>& fn) {
    std::size_t i = 0;
    while (i < value.size()) {
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) i++;
        std::size_t j = value.find_first_of(" \t", i);
        if (j == std::string_view::npos) j = value.size();
        if (j == i) break;
        std::string_view item = value.substr(i, j - i);
        i = j;
        std::size_t eq = item.find('=');
        if (!fn(item.substr(0, eq), eq == std::string_view::npos ? "" : item.substr(eq + 1))) return false;
    }
    return true;
}

bool parse_count(std::string_view name, std::string_view v, uint32_t& out, std::string& err) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < 1 || n > 10000000) {
        err = std::string(name) + "= takes a number from 1 to 10000000";
        return false;
    }
    out = uint32_t(n);
    return true;
}

bool valid_name(std::string_view s) {
    return !s.empty() && s.size() <= 64 && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-") == std::string_view::npos;
}

}  // namespace

bool parse_pool_list(std::string_view value, std::vector<std::string>& out, std::string& err) {
    out.clear();
    for (std::string_view field : split(value, ',')) {
        std::string name = addr::lower(field);
        if (!valid_name(name)) { err = "bad pool name \"" + name.substr(0, 64) + "\" (letters, digits, _ . -)"; return false; }
        if (std::find(out.begin(), out.end(), name) != out.end()) { err = "pool " + name + " named twice"; return false; }
        if (out.size() == 8) { err = "more than 8 pools"; return false; }
        out.push_back(std::move(name));
    }
    return true;
}

bool parse_destination_policy(std::string_view value, DestinationPolicy& out, std::string& err) {
    out = DestinationPolicy{};
    bool any = false;
    bool ok = for_each_setting(value, [&](std::string_view name, std::string_view v) {
        any = true;
        if (name == "adaptive") {
            if (v != "yes" && v != "no") { err = "adaptive= takes yes or no"; return false; }
            out.adaptive = v == "yes";
            return true;
        }
        if (name == "pool") return parse_pool_list(v, out.pools, err);
        if (name == "class") {
            out.warmup_class = addr::lower(v);
            if (!valid_name(out.warmup_class)) { err = "class= takes a name of letters, digits, _ . -"; return false; }
            return true;
        }
        uint32_t* field = name == "max_connections"      ? &out.max_connections
                          : name == "max_per_connection" ? &out.max_per_connection
                          : name == "max_per_minute"     ? &out.max_per_minute
                          : name == "max_per_hour"       ? &out.max_per_hour
                                                         : nullptr;
        if (!field) {
            err = "unknown setting \"" + std::string(name) +
                  "\" (max_connections, max_per_connection, max_per_minute, max_per_hour, adaptive, pool, class)";
            return false;
        }
        return parse_count(name, v, *field, err);
    });
    if (ok && !any) { err = "no settings"; return false; }
    return ok;
}

bool parse_source_address(std::string_view key, std::string_view value, SourceAddress& out, std::string& err) {
    out = SourceAddress{};
    std::string k(key);
    unsigned char buf[sizeof(struct in6_addr)];
    char text[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, k.c_str(), buf) == 1) out.family = AF_INET;
    else if (inet_pton(AF_INET6, k.c_str(), buf) == 1) out.family = AF_INET6;
    else { err = "\"" + k.substr(0, 64) + "\" is not an IPv4 or IPv6 address"; return false; }
    out.address = inet_ntop(out.family, buf, text, sizeof text);
    bool ok = for_each_setting(value, [&](std::string_view name, std::string_view v) {
        if (name == "helo") {
            out.helo = addr::lower(v);
            if (!addr::valid_domain(out.helo, false)) { err = "helo= takes a host name"; return false; }
            return true;
        }
        if (name == "pool") return parse_pool_list(v, out.pools, err);
        if (name == "warmup") {
            out.warmup.clear();
            for (std::string_view day : split(v, ',')) {
                uint32_t n = 0;
                if (!parse_count("warmup", day, n, err)) return false;
                if (out.warmup.size() == 366) { err = "warmup= has more than 366 days"; return false; }
                out.warmup.push_back(n);
            }
            return true;
        }
        err = "unknown setting \"" + std::string(name) + "\" (helo, pool, warmup)";
        return false;
    });
    if (ok && out.pools.empty()) out.pools.push_back("default");
    return ok;
}

bool valid_policy_key(std::string_view key) {
    if (valid_domain_key(key)) return true;
    if (key.substr(0, 3) == "mx:") return key.size() > 3 && key[3] != '*' && valid_domain_key(key.substr(3));
    std::size_t close = key.find(']');
    if (key.size() < 3 || key.front() != '[' || close == std::string_view::npos || close < 2) return false;
    std::string_view rest = key.substr(close + 1);
    if (rest.empty()) return true;
    uint32_t port = 0;
    auto [p, ec] = std::from_chars(rest.data() + 1, rest.data() + rest.size(), port);
    return rest[0] == ':' && ec == std::errc() && p == rest.data() + rest.size() && port >= 1 && port <= 65535;
}

bool parse_transport(std::string_view value, TransportEntry& out, std::string& err) {
    out = TransportEntry{};
    auto colon = value.find(':');
    if (colon == std::string_view::npos) {
        err = "expected TRANSPORT:NEXTHOP (smtp:, lmtp:, local:, error: or retry:)";
        return false;
    }
    std::string method = addr::lower(value.substr(0, colon));
    std::string_view rest = value.substr(colon + 1);
    if (method == "smtp") {
        out.kind = TransportEntry::smtp;
        out.nexthop = std::string(rest);
        if (rest.empty()) return true;
        if (!check_smtp_nexthop(rest, err)) { err = "smtp:" + std::string(rest) + ": " + err; return false; }
        return true;
    }
    if (method == "lmtp") {
        out.kind = TransportEntry::lmtp;
        out.nexthop = "lmtp:" + std::string(rest);
        return check_lmtp_nexthop(out.nexthop, err);
    }
    if (method == "local") {
        out.kind = TransportEntry::local;
        if (!rest.empty()) { err = "local: takes no next hop"; return false; }
        return true;
    }
    if (method == "error" || method == "retry") {
        out.kind = method == "error" ? TransportEntry::error : TransportEntry::retry;
        if (!check_status_text(rest, method == "error" ? '5' : '4', err)) return false;
        out.text = std::string(rest);
        return true;
    }
    err = "unknown transport \"" + method + "\" (expected smtp, lmtp, local, error or retry)";
    return false;
}

bool valid_tls_policy_level(std::string_view level) {
    return level == "none" || level == "may" || level == "encrypt" || level == "dane" || level == "mta-sts";
}

Route route(const Config& cfg, std::string_view domain, const RouteTables& tables) {
    bool local = domain.empty() || cfg.is_local_domain(domain);
    Route r;
    r.transport = "default";
    std::optional<std::pair<std::string, std::string>> hit;
    if (!domain.empty() && !tables.transport_error.empty())
        return retry_route("4.3.0 transport_map unavailable: " + tables.transport_error, "unavailable");
    // "*" is a catch-all for remote mail only: mail for our own domains moves elsewhere only by name.
    if (!domain.empty()) hit = lookup_domain(tables.transport, domain, !local);
    if (hit) {
        TransportEntry e;
        std::string err;
        r.transport = hit->first + " " + hit->second;
        if (!parse_transport(hit->second, e, err))
            return retry_route("4.3.5 bad transport_map entry for " + hit->first + ": " + err, r.transport);
        switch (e.kind) {
        case TransportEntry::smtp: r.role = "smtp"; r.nexthop = "smtp:" + (e.nexthop.empty() ? std::string(domain) : e.nexthop); break;
        case TransportEntry::lmtp: r.role = "smtp"; r.nexthop = e.nexthop; break;
        case TransportEntry::local: r.role = "local"; r.nexthop = std::string(domain); break;
        case TransportEntry::error: r.role = "error"; r.text = e.text; return r;
        case TransportEntry::retry: r.role = "retry"; r.text = e.text; return r;
        }
    } else if (!local) {
        r.role = "smtp";
        r.nexthop = std::string(domain);
        r.group = cfg.relayhost;  // mta-smtp sends it there: one destination for every domain, as Postfix
    } else if (cfg.local_transport.rfind("lmtp:", 0) == 0) {
        r.role = "smtp";
        r.nexthop = cfg.local_transport;
    } else {
        r.role = "local";
        r.nexthop = std::string(domain);
    }
    // destination_policy: the next hop itself when it is a host ("[relay]:587" for the relayhost, the
    // target of smtp:[host]), then the recipient domain as transport_map looks domains up.
    if (r.role == "smtp" && r.nexthop.rfind("lmtp:", 0) != 0 && !tables.destination_policy_error.empty())
        return retry_route("4.3.0 destination_policy unavailable: " + tables.destination_policy_error, r.transport);
    if (r.role == "smtp" && r.nexthop.rfind("lmtp:", 0) != 0 && tables.destination_policy) {
        std::string hop = !r.group.empty() ? r.group : r.nexthop.rfind("smtp:", 0) == 0 ? r.nexthop.substr(5) : "";
        std::optional<std::pair<std::string, std::string>> p;
        if (!hop.empty() && hop.front() == '[')
            if (auto v = tables.destination_policy(hop)) p = std::make_pair(hop, *v);
        if (!p) p = lookup_domain(tables.destination_policy, domain, false);
        // The provider's budget: "mx:HOST" / "mx:.SUFFIX" keys match the MX host the queue has seen
        // for the domain (plain MX routing only); all domains it matches share one destination.
        std::string mx = !p && hop.empty() && r.nexthop == domain && tables.known_mx ? tables.known_mx(domain) : "";
        if (!mx.empty()) {
            auto hit = lookup_domain([&](std::string_view k) { return tables.destination_policy("mx:" + std::string(k)); },
                                     mx, false);
            if (hit) {
                p = std::make_pair("mx:" + hit->first, hit->second);
                r.group = p->first;
            }
        }
        if (!p) p = lookup_domain(tables.destination_policy, "", true);  // "*"
        std::string err;
        if (p && !parse_destination_policy(p->second, r.policy, err))
            return retry_route("4.3.5 bad destination_policy entry for " + p->first + ": " + err, r.transport);
        if (p) r.policy.key = p->first;
    }
    // TLS policy concerns SMTP to other hosts; LMTP and Maildir delivery stay on this host.
    if (r.role != "smtp" || r.nexthop.rfind("lmtp:", 0) == 0) return r;
    if (!tables.tls_policy_error.empty())
        return retry_route("4.3.0 smtp_tls_policy_map unavailable: " + tables.tls_policy_error, r.transport);
    if (auto p = lookup_domain(tables.tls_policy, domain)) {
        if (!valid_tls_policy_level(p->second))
            return retry_route("4.3.5 bad smtp_tls_policy_map entry for " + p->first, r.transport);
        r.tls_level = p->second;
    }
    return r;
}

}  // namespace mta
