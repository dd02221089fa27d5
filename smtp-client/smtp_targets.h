// Turns a Destination into the ordered list of addresses to try (MX, then A/AAAA), asynchronously,
// through an injected DnsClient (the resolver link in production, a fake in tests).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <vector>

#include "common/config.h"
#include "common/dns_link.h"
#include "smtp-client/smtp_nexthop.h"

namespace mta::smtp {

struct Target {
    std::string host;  // MX host name (or the literal)
    std::string ip;    // textual address
    uint16_t port = 25;
    sockaddr_storage sa{};
    socklen_t salen = 0;
    bool dnssec_secure = false;  // MX (if any) and address answers all DNSSEC-validated (RFC 7672 §2.2)
    std::string label() const;  // "host[ip]:port"
    std::string hostip() const;  // "host[ip]"
};

struct TargetResult {
    std::vector<Target> targets;           // non-empty on success
    ipc::DeliveryStatus status = ipc::DeliveryStatus::deferred;  // when targets is empty
    std::string text;                      // "5.1.2 ..." etc. when targets is empty
};

// Build a Target from a textual IP; false if `ip` is not an address.
bool make_target(const std::string& host, const std::string& ip, uint16_t port, Target& out);

// One lookup; owned by the delivery. Destroying it cancels the callback.
class TargetResolver {
public:
    using Done = std::function<void(TargetResult)>;
    TargetResolver(DnsClient& dns, const Config& cfg, std::function<uint32_t()> rng)
        : dns_(dns), cfg_(cfg), rng_(std::move(rng)) {}
    // `done` runs once; for an address literal already inside start(), so call start() last.
    void start(const Destination& d, Done done);

private:
    struct HostAddrs {
        std::string name;
        std::vector<std::string> ips;
        bool secure = true;  // every address answer for this host was DNSSEC-secure
    };
    void on_mx(const DnsAnswer& a);
    void lookup_hosts(std::vector<std::string> names);
    void on_addr(std::size_t idx, const DnsAnswer& a, uint16_t qtype);
    void finish_addrs();
    void fail(ipc::DeliveryStatus st, std::string text);
    bool is_own_address(const Target& t) const;

    DnsClient& dns_;
    const Config& cfg_;
    std::function<uint32_t()> rng_;
    Destination dest_;
    Done done_;
    std::vector<HostAddrs> hosts_;
    int pending_ = 0;
    bool mx_secure_ = false;  // the MX answer (or its absence) was DNSSEC-secure
    std::string temp_error_;  // last temporary failure of an address lookup
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mta::smtp
