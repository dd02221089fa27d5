// Which delivery role gets a recipient domain, and with what next hop and TLS level: the one place that
// knows the precedence transport_map > relayhost > MX, that local domains go to mta-local (Maildir)
// unless `local_transport` or a transport_map entry says otherwise, and how smtp_tls_policy_map picks a
// per-destination TLS level. Pure: the tables are injected as lookup functions; the queue calls it when
// it groups recipients into deliveries, mtamap uses the parsers to validate table sources.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.h"

namespace mta {

// A destination_policy entry (mtamap -t destination_policy): "max_connections=N max_per_connection=N
// max_per_minute=N max_per_hour=N adaptive=yes|no pool=NAME[,NAME...] class=NAME", any subset, in any
// order. 0 = no limit of that kind.
struct DestinationPolicy {
    uint32_t max_connections = 0;  // concurrent deliveries (under delivery_concurrency)
    uint32_t max_per_connection = 0;  // transactions one connection of mta-smtp carries
    uint32_t max_per_minute = 0;   // messages handed to deliveries in any 60 s
    uint32_t max_per_hour = 0;     // ... in any 3600 s
    bool adaptive = true;          // a "slow down" reply cuts the rate for a while
    std::vector<std::string> pools;  // source pools for senders that have none (sender_source_pools), in order
    std::string warmup_class;      // class= : the destination class warm-up allowances count in ("" = key)
    std::string key;               // the table key that matched ("" = no entry: the defaults above)
    bool operator==(const DestinationPolicy&) const = default;
    // The destination class of warm-up counting: class=, else the matching key, else "*".
    std::string destination_class() const { return !warmup_class.empty() ? warmup_class : key.empty() ? "*" : key; }
};
bool parse_destination_policy(std::string_view value, DestinationPolicy& out, std::string& err);

// Outbound source addresses (mtamap -t source_addresses): key = an IPv4 or IPv6 address, value = any of
// "helo=NAME pool=NAME[,NAME...] warmup=N[,N...]". An address without pool= is in pool "default".
struct SourceAddress {
    std::string address;             // the key, in canonical text form (inet_ntop)
    int family = 0;                  // AF_INET or AF_INET6
    std::string helo;                // EHLO name with this address ("" = smtp_helo_name or hostname)
    std::vector<std::string> pools;  // the pools it belongs to
    std::vector<uint32_t> warmup;    // messages per day and destination class on day 1, 2, ...; past the
                                     // last day (or when empty) the address is warm: no allowance
};
bool parse_source_address(std::string_view key, std::string_view value, SourceAddress& out, std::string& err);
// A pool list "NAME[,NAME...]" (sender_source_pools values, destination_policy pool=): up to 8 names of
// [a-z0-9_.-], 1-64 characters; the first pool with an allowance left is used, the rest are spill-overs.
bool parse_pool_list(std::string_view value, std::vector<std::string>& out, std::string& err);

struct Route {
    // "local" (mta-local), "smtp" (mta-smtp, SMTP or LMTP), or settled at once by the queue:
    // "error" (bounce with `text`) / "retry" (defer with `text`).
    std::string role;
    // The domain (MX lookup, relayhost applies), "smtp:DEST" (a transport_map next hop: relayhost does
    // not apply; DEST is "host", "host:port", "[host]" or "[host]:port"), or "lmtp:unix:/path" /
    // "lmtp:[host]:port". For "local": the recipient domain.
    std::string nexthop;
    std::string text;       // error/retry: "5.x.y text" / "4.x.y text"
    std::string tls_level;  // from smtp_tls_policy_map; "" = smtp_tls_level applies
    std::string transport;  // for logs: the transport_map entry used ("KEY VALUE"), or "default"
    // Recipients with the same group share one scheduling destination (one concurrency budget, jobs
    // and transactions across their domains): the relayhost, for plain-domain mail while it is set.
    // "" = the nexthop itself.
    std::string group;
    DestinationPolicy policy;  // smtp only: from destination_policy
};

// An exact-key lookup in one table (an LMDB table in production, a map in tests).
using TableLookup = std::function<std::optional<std::string>(std::string_view key)>;

struct RouteTables {
    TableLookup transport;          // unset: no transport_map
    std::string transport_error;    // set: transport_map is configured but unusable (mail defers 4.3.0)
    TableLookup tls_policy;         // unset: no smtp_tls_policy_map
    std::string tls_policy_error;
    TableLookup destination_policy; // unset: no destination_policy
    std::string destination_policy_error;
    // The MX host the queue learned for a domain from earlier deliveries ("" = not known), for
    // destination_policy "mx:" keys; unset: none known.
    std::function<std::string(std::string_view domain)> known_mx;
    TableLookup sender_pools;       // unset: no sender_source_pools (the queue looks senders up in it)
    std::string sender_pools_error;
};

// Mail that must wait for the admin (a table unusable or wrong): deferred with `text`.
Route retry_route(std::string text, std::string transport);

// `domain` lower-cased; "" (a bare local part such as "postmaster") counts as local and ignores tables.
Route route(const Config& cfg, std::string_view domain, const RouteTables& tables = {});

// Domain table lookup order: the exact domain, then ".parent" suffixes from the longest, then "*" (when
// `wildcard`). Returns the matching key and its value.
std::optional<std::pair<std::string, std::string>> lookup_domain(const TableLookup& table, std::string_view domain,
                                                                 bool wildcard = true);

// A key of a transport or tls_policy table: "domain", ".domain" or "*".
bool valid_domain_key(std::string_view key);
// A key of destination_policy: those, a next hop "[host]" / "[host]:port" (a relayhost or a
// transport_map target, matched exactly), or an MX host "mx:host" / "mx:.suffix".
bool valid_policy_key(std::string_view key);

struct TransportEntry {
    enum Kind { smtp, lmtp, local, error, retry } kind = smtp;
    std::string nexthop;  // smtp: "" (the recipient domain) or "host[:port]" / "[host][:port]"; lmtp: the whole value
    std::string text;     // error/retry: "5.x.y text" / "4.x.y text"
};

// A transport_map value: "smtp:", "smtp:host[:port]", "smtp:[host][:port]", "lmtp:unix:/path",
// "lmtp:[IP]:port", "local:", "error:5.x.y text", "retry:4.x.y text". False with `err` otherwise.
bool parse_transport(std::string_view value, TransportEntry& out, std::string& err);

// A tls_policy level: none, may, encrypt, dane or mta-sts (the names mta-smtp's parse_tls_level knows).
bool valid_tls_policy_level(std::string_view level);

}  // namespace mta
