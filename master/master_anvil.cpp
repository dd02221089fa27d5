// mtad's anvil service: answers the smtpd processes' per-client questions (anvil_connect,
// anvil_auth_fail) from one Anvil table, so the limits hold across all smtpd processes. Every field
// from an smtpd is checked; a message that breaks the protocol kills that smtpd like any other.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <ctime>

#include "common/log.h"
#include "common/wire/wire.h"
#include "master/master.h"

namespace mta::master {
namespace {

// The numeric address an smtpd reports, re-spelled canonically (one key per address) with its
// sockaddr for the mynetworks check. False for anything that is not a plain IPv4/IPv6 address.
bool parse_client(const std::string* text, std::string& ip, sockaddr_storage& ss) {
    if (!text || text->empty() || text->size() >= INET6_ADDRSTRLEN) return false;
    char buf[INET6_ADDRSTRLEN];
    memset(&ss, 0, sizeof ss);
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, text->c_str(), &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
    } else if (inet_pton(AF_INET6, text->c_str(), &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
    } else {
        return false;
    }
    ip = buf;
    return true;
}

const char* reason_name(Anvil::Result r) {
    return r == Anvil::Result::refuse_concurrency ? "concurrency" : r == Anvil::Result::refuse_rate ? "rate" : "none";
}

}  // namespace

Anvil::Limits Master::anvil_limits() const {
    return Anvil::Limits{cfg_.smtpd_client_connection_limit, cfg_.smtpd_client_connection_rate_limit,
                         cfg_.smtpd_client_auth_failure_rate_limit};
}

// Returns false when the message is not valid anvil traffic from an smtpd (the caller kills it).
bool Master::on_anvil_message(Child& c, ipc::Message& m) {
    if (c.role != Role::smtpd || c.pid <= 0) return false;
    uint64_t link = uint64_t(c.pid);
    std::string err;
    if (m.type == ipc::Type::anvil_disconnect) {
        wire::AnvilDisconnect d;
        if (!wire::decode(m, d, err)) return false;
        anvil_.disconnect(link, m.reqid);
        return true;
    }
    wire::AnvilConnect conn;
    wire::AnvilAuthFail fail;
    bool is_fail = m.type == ipc::Type::anvil_auth_fail;
    if (is_fail ? !wire::decode(m, fail, err) : !wire::decode(m, conn, err)) return false;
    std::string ip;
    sockaddr_storage ss;
    if (!parse_client(is_fail ? &fail.client_addr : &conn.client_addr, ip, ss)) return false;
    bool exempt = cfg_.exempt_from_client_limits(reinterpret_cast<const sockaddr*>(&ss));
    time_t now = time(nullptr);
    if (m.type == ipc::Type::anvil_auth_fail) {
        uint64_t n = anvil_.auth_fail(ip, exempt, now, anvil_limits());
        c.link->send(wire::encode(wire::AnvilAuthCount{ip, n}, m.reqid));
        return true;
    }
    const std::string& kind = conn.listen_kind;  // smtp, submission or smtps: checked by the decoder
    Anvil::Verdict v;
    Anvil::Limits limits = anvil_limits();
    if (!anvil_.connect(link, m.reqid, ip, exempt, now, limits, v)) return false;  // id already open
    if (v.result != Anvil::Result::allow)
        LOG_INFO("event=anvil_refuse client=%s reason=%s listener=%s concurrent=%llu rate=%llu limit=%llu",
                 ip.c_str(), reason_name(v.result), kind.c_str(), (unsigned long long)v.concurrent,
                 (unsigned long long)v.rate,
                 (unsigned long long)(v.result == Anvil::Result::refuse_rate ? limits.rate : limits.connections));
    ipc::AnvilStatus st = v.result == Anvil::Result::allow ? ipc::AnvilStatus::allow
                          : v.result == Anvil::Result::refuse_rate ? ipc::AnvilStatus::refuse_rate
                                                                   : ipc::AnvilStatus::refuse_concurrency;
    c.link->send(wire::encode(wire::AnvilVerdict{uint64_t(st), v.concurrent, v.rate, v.auth_failures}, m.reqid));
    return true;
}

std::string Master::anvil_status_line() const {
    Anvil::Totals t = anvil_.totals();
    return "anvil clients=" + std::to_string(t.clients) + " connections=" + std::to_string(t.connections) +
           " refused=" + std::to_string(t.refused) + "\n";
}

}  // namespace mta::master
