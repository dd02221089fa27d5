// mta.conf: "key = value" lines, '#' comments, lists split on spaces/commas. Every key has a built-in
// default (kKeys), so no file at all is a valid configuration: the development instance under ./run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/dnsbl.h"

struct sockaddr;

namespace mta {

struct HostPort {
    std::string host;   // literal address or name, without brackets
    uint16_t port = 0;
    std::string str() const;  // "host:port" or "[v6]:port"
};

// One milter of smtpd_milters: "unix:/path" (or Sendmail's "local:/path"), or "inet:host:port" with host an
// IP address, [IPv6] or localhost. mtad connects it (mta-smtpd's chroot has no filesystem and names no path).
struct MilterEndpoint {
    std::string spec;   // as written in the config (log lines, and the check of mtad's own list)
    std::string path;   // unix socket path, or "" for inet
    std::string host;   // numeric address for inet
    uint16_t port = 0;
};
bool parse_milter_endpoint(std::string_view s, MilterEndpoint& out, std::string& err);

// A unix socket path we may connect to: absolute, fitting sockaddr_un (kMaxSocketPath bytes at most),
// without space, tab or NUL (local_transport, transport_map lmtp:unix:, milters).
inline constexpr std::size_t kMaxSocketPath = 107;
bool valid_socket_path(std::string_view p);

struct Cidr {
    int family = 0;          // AF_INET / AF_INET6
    unsigned char addr[16] = {};
    int prefix = 0;
    bool matches(const sockaddr* sa) const;
};

// Parse "1.2.3.0/24", "::1/128", "[::1]/128" or a bare address.
bool parse_cidr(std::string_view s, Cidr& out);
// Parse "host:port", "[v6]:port" or ":port" (all addresses).
// Port 0 is refused unless allow_port_zero (listeners: the kernel picks a free port, mtad logs it).
bool parse_hostport(std::string_view s, HostPort& out, bool allow_port_zero = false);
bool parse_duration(std::string_view s, uint64_t& seconds);   // "30", "30s", "5m", "1h", "5d"
bool parse_size(std::string_view s, uint64_t& bytes);          // "1000", "10k", "10m", "1g"
std::vector<std::string> split_list(std::string_view s);

struct Config {
    std::string hostname;
    std::vector<HostPort> smtp_listen, submission_listen, smtps_listen;
    std::vector<Cidr> mynetworks;
    std::vector<std::string> local_domains, relay_domains;  // lower-cased
    std::string relayhost;          // "[host]:port", "host" (MX lookup) or ""
    std::string transport_map;          // LMDB table domain -> transport:nexthop (mtamap -t transport)
    std::string destination_policy;     // LMDB table domain|[host]:port -> shaping (mtamap -t destination_policy)
    std::string source_addresses;       // LMDB table source address -> helo/pools/warm-up (mtamap -t source_addresses)
    std::string sender_source_pools;    // LMDB table sender domain -> source pools (mtamap -t sender_pools)
    std::vector<std::string> slowdown_patterns;  // destination_slowdown_patterns, lower-cased
    uint64_t destination_slowdown_time = 0;
    std::string smtp_tls_policy_map;    // LMDB table domain -> TLS level (mtamap -t tls_policy)
    std::string spool_dir, mail_dir, libexec_dir, control_socket;
    std::string tls_cert, tls_key, auth_users, local_recipients;
    std::string alias_map, virtual_map;  // LMDB aliases / virtual tables (common/alias_expand.h)
    uint64_t message_size_limit = 0, recipient_limit = 0;
    uint64_t queue_minfree = 0;     // bytes kept free on the queue's filesystem (MAIL gets 452 4.3.1)
    std::string mail_owner, smtpd_user, queue_user, smtp_user, resolver_user;
    std::string dns_forwarder, dns_trust_anchors;
    std::vector<std::string> dns_insecure_domains;
    uint16_t smtp_port = 25;
    uint64_t smtp_connect_timeout = 0, smtp_helo_timeout = 0;  // seconds
    std::string smtp_bind_address, smtp_bind_address6;  // outbound source addresses ("" = any)
    std::string smtp_helo_name;                         // outbound EHLO name ("" = hostname)
    std::string smtp_tls_level;    // none, may, encrypt, dane or mta-sts
    std::string smtp_tls_ca_file;  // CA store for MTA-STS (policy fetch and MX certificates)
    uint16_t mta_sts_port = 443;
    std::string local_transport;   // "maildir" or "lmtp:unix:/path" / "lmtp:[host]:port"
    uint64_t smtpd_processes = 0, smtp_processes = 0;
    uint64_t smtpd_line_length_limit = 0, smtpd_timeout = 0, smtpd_error_limit = 0, smtpd_junk_command_limit = 0;
    uint64_t smtpd_client_connection_limit = 0, smtpd_max_connections = 0;
    uint64_t smtpd_auth_failure_limit = 0, smtpd_auth_failure_delay = 0;
    uint64_t smtpd_client_connection_rate_limit = 0, smtpd_client_auth_failure_rate_limit = 0;
    // smtpd_client_event_limit_exceptions: these networks, plus mynetworks when the list names
    // "$mynetworks" (the default), are exempt from the three per-client limits above.
    std::vector<Cidr> client_limit_exceptions;
    bool client_limit_exceptions_mynetworks = false;
    // smtpd_dnsbl_zones: asked at connect (through mta-resolver) about clients outside mynetworks and
    // smtpd_dnsbl_allowlist; listed clients get 554 5.7.1 at RCPT unless they authenticated.
    std::vector<DnsblZone> dnsbl_zones;
    int smtpd_dnsbl_threshold = 1;
    std::vector<Cidr> dnsbl_allowlist;
    uint64_t smtpd_min_data_rate = 0, smtpd_min_data_rate_window = 0;
    uint64_t hop_count_limit = 0;
    uint64_t minimal_backoff_time = 0, maximal_backoff_time = 0, maximal_queue_lifetime = 0,
             bounce_queue_lifetime = 0, delay_warning_time = 0, delivery_concurrency = 0;
    bool suppress_hard_bounces = false;     // the suppression list (mta-queue(8), SUPPRESSION)
    bool tlsrpt_reports = false;            // RFC 8460 reports of outbound TLS (mta-queue(8), TLS-RPT)
    std::string tlsrpt_from;                // their From: ("" = postmaster@hostname)
    std::string tlsrpt_organization;        // their organization-name ("" = hostname)
    uint64_t suppression_ttl = 0;
    std::string log_level;
    std::string log_format = "kv";     // kv or json
    std::string maillog_file;          // log lines to this file instead of syslog ("" = syslog)
    // Metrics (common/metrics.h): served over HTTP by mta-metrics when metrics_listen is set.
    std::vector<HostPort> metrics_listen;
    std::string metrics_user;
    uint64_t metrics_top_destinations = 10;  // per-destination series; the rest add up as "other"
    // mta-msgauth (msgauth/, mta-msgauth(8)): DKIM signing keys, verification and what its verdicts do.
    std::string msgauth_user;
    std::string dkim_keys;                  // LMDB table (mtamap -t dkim); "" = sign nothing
    bool msgauth_verify = true;             // DKIM/SPF/DMARC for clients neither in mynetworks nor authenticated
    std::string msgauth_default_action;     // tempfail | accept: when mta-msgauth is down or too slow
    uint64_t msgauth_timeout = 0;           // seconds smtpd waits for the verdict
    uint64_t dkim_max_signatures = 0;       // DKIM-Signature fields verified per message
    std::string spf_action;                 // none | reject_fail
    // Milters (mta-smtpd(8) MILTER): Sendmail's content filter protocol, in the order listed.
    std::vector<MilterEndpoint> smtpd_milters;
    std::vector<MilterEndpoint> non_smtpd_milters;  // for mail from sendmail (maildrop pickup in mta-queue)
    std::string milter_default_action;      // tempfail | accept | reject: a milter down, slow or broken
    uint64_t milter_connect_timeout = 0, milter_command_timeout = 0, milter_content_timeout = 0;
    // Macros sent per stage (Postfix's milter_*_macros), by SMFIM_* stage order: connect, helo, mail,
    // rcpt, data, end of message, end of header; then unknown command.
    std::vector<std::string> milter_macros[8];
    std::string dmarc_action;               // none | enforce

    std::vector<std::pair<std::string, std::string>> values;  // effective key -> text, in kKeys order
    std::string text;  // the source text this was parsed from (sent to children on start/reload)
    std::string source = "(built-in defaults)";
    std::vector<std::string> warnings;  // "file:line: key: ..." for accepted oddities (a key given twice)

    bool is_local_domain(std::string_view domain_lower) const;
    bool is_relay_domain(std::string_view domain_lower) const;
    bool in_mynetworks(const sockaddr* sa) const;
    bool exempt_from_client_limits(const sockaddr* sa) const;  // smtpd_client_event_limit_exceptions
};

struct ConfigError {
    std::string file;
    int line = 0;
    std::string key;
    std::string message;
    std::string str() const;  // "file:line: key: message"
};

struct KeyInfo {
    const char* name;
    const char* default_value;
    const char* help;
};
const std::vector<KeyInfo>& config_keys();

// Parse text (defaults first, then each line). Returns false and fills errors on any bad line.
bool parse_config(std::string_view text, const std::string& filename, Config& out, std::vector<ConfigError>& errors);
// Read path; a missing file when `missing_ok` means "embedded defaults".
bool load_config(const std::string& path, bool missing_ok, Config& out, std::vector<ConfigError>& errors);
// Rewrites relative path keys (spool_dir, mail_dir, ...) as absolute paths against the current
// directory, and appends them and the looked-up default hostname to `text` so that roles re-parsing
// it inside a chroot agree.
void absolutize_paths(Config& c);
// Where mta-queue keeps its LMDB environment and bodies, and chroots: a subdirectory, so that the
// spool root, the chroot dirs of other roles and the control socket stay root-owned.
inline std::string queue_dir(const Config& c) { return c.spool_dir + "/queue"; }

// The value of a key as the config has it (for mtaconf); "" for unknown keys.
std::string config_value_text(const Config& c, std::string_view key);

inline constexpr const char* kDefaultConfigPath = "/etc/mta/mta.conf";

}  // namespace mta
