// mta.conf's key table: every key with its default, help text and a validating setter. Split from
// config.cpp (the parser and the Config helpers) to keep both readable; see config_keys.h.
#include "common/config_keys.h"

#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/address.h"
#include "common/dnsbl.h"
#include "common/log.h"

namespace mta::config_detail {

std::string trim(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) e--;
    return std::string(s.substr(b, e - b));
}

bool parse_u64(std::string_view s, uint64_t& out) {
    if (s.empty() || s.size() > 19) return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + uint64_t(c - '0');
    }
    out = v;
    return true;
}

// The system host name, made fully qualified through the resolver's canonical name (/etc/hosts, then
// DNS) when that has a dot; else the short name as it is. Looked up once per process. The roles
// re-parse the config inside a chroot where the lookup fails, so absolutize_paths pins the result.
std::string lookup_hostname() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0] || !addr::valid_domain(addr::lower(buf))) return "localhost";
    std::string name = addr::lower(buf);
    if (name.find('.') != std::string::npos) return name;
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_CANONNAME;
    if (getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0) return name;
    std::string canon = res && res->ai_canonname ? addr::lower(res->ai_canonname) : "";
    freeaddrinfo(res);
    if (canon.find('.') == std::string::npos || !addr::valid_domain(canon)) return name;
    return canon;
}
const std::string& default_hostname() {
    static const std::string name = lookup_hostname();
    return name;
}


namespace {

// The same rules mta-smtp applies to the next hop (smtp-client/lmtp_nexthop.cpp), so a value it
// could not use is refused here with file:line rather than deferring every local message.
bool check_local_transport(const std::string& v, std::string& err) {
    if (v == "maildir") return true;
    const char* usage = "expected maildir, lmtp:unix:/path or lmtp:[IP address]:port";
    if (v.rfind("lmtp:unix:", 0) == 0) {
        if (!valid_socket_path(std::string_view(v).substr(10))) {
            err = usage;
            err += " (an absolute socket path of at most ";
            err += std::to_string(kMaxSocketPath);
            err += " bytes)";
            return false;
        }
        return true;
    }
    auto close = v.find("]:");
    if (v.rfind("lmtp:[", 0) != 0 || close == std::string::npos) { err = usage; return false; }
    std::string host = v.substr(6, close - 6);
    unsigned char buf[16];
    if (inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1) {
        err = "LMTP host must be an IP address, got \"" + log::safe(host) + "\" (mta-smtp does not resolve it)";
        return false;
    }
    uint64_t port;
    if (!parse_u64(v.substr(close + 2), port) || port == 0 || port > 65535) { err = "expected a port 1..65535"; return false; }
    return true;
}

// A network list (mynetworks and the like). With `mynetworks` non-null the list may also name
// "$mynetworks" (Postfix's spelling), which sets *mynetworks instead of copying the value: it is
// looked up when used, so the order of the two keys in the file does not matter.
bool parse_networks(const std::string& v, std::vector<Cidr>& out, bool* mynetworks, std::string& err) {
    std::vector<Cidr> nets;
    bool ref = false;
    for (auto& item : split_list(v)) {
        if (mynetworks && (item == "$mynetworks" || item == "${mynetworks}")) {
            ref = true;
            continue;
        }
        Cidr n;
        if (!parse_cidr(item, n)) {
            err = "invalid network \"" + log::safe(item) + "\" (address, or address/prefix with no host bits set" +
                  (mynetworks ? ", or $mynetworks)" : ")");
            return false;
        }
        nets.push_back(n);
    }
    out = std::move(nets);
    if (mynetworks) *mynetworks = ref;
    return true;
}

Setter str(std::string Config::*m) {
    return [m](Config& c, const std::string& v, std::string&) { c.*m = v; return true; };
}
Setter path(std::string Config::*m) {
    return [m](Config& c, const std::string& v, std::string& err) {
        if (v.find('\0') != std::string::npos) { err = "invalid path"; return false; }
        c.*m = v;
        return true;
    };
}
Setter num(uint64_t Config::*m, uint64_t lo, uint64_t hi) {
    return [m, lo, hi](Config& c, const std::string& v, std::string& err) {
        uint64_t n;
        if (!parse_u64(v, n)) { err = "expected a number, got \"" + log::safe(v) + "\""; return false; }
        if (n < lo || n > hi) { err = "value out of range " + std::to_string(lo) + ".." + std::to_string(hi); return false; }
        c.*m = n;
        return true;
    };
}
Setter duration(uint64_t Config::*m, bool nonzero = true) {
    return [m, nonzero](Config& c, const std::string& v, std::string& err) {
        if (!parse_duration(v, c.*m) || (nonzero && c.*m == 0)) { err = "expected a duration (e.g. 300s, 5m, 1h, 5d), got \"" + log::safe(v) + "\""; return false; }
        return true;
    };
}
Setter choice(std::string Config::*m, std::vector<std::string> allowed) {
    return [m, allowed](Config& c, const std::string& v, std::string& err) {
        for (auto& a : allowed)
            if (v == a) { c.*m = v; return true; }
        err = "expected";
        for (std::size_t i = 0; i < allowed.size(); i++) err += (i ? (i + 1 == allowed.size() ? " or " : ", ") : " ") + allowed[i];
        return false;
    };
}
Setter yes_no(bool Config::*m) {
    return [m](Config& c, const std::string& v, std::string& err) {
        if (v != "yes" && v != "no") { err = "expected yes or no"; return false; }
        c.*m = v == "yes";
        return true;
    };
}
// An address literal of one family (AF_INET or AF_INET6), or empty.
Setter ip_literal(std::string Config::*m, int family) {
    return [m, family](Config& c, const std::string& v, std::string& err) {
        unsigned char buf[16];
        if (!v.empty() && inet_pton(family, v.c_str(), buf) != 1) {
            err = family == AF_INET ? "expected an IPv4 address" : "expected an IPv6 address";
            return false;
        }
        c.*m = v;
        return true;
    };
}
Setter listen(std::vector<HostPort> Config::*m) {
    return [m](Config& c, const std::string& v, std::string& err) {
        std::vector<HostPort> out;
        for (auto& item : split_list(v)) {
            HostPort hp;
            if (!parse_hostport(item, hp, true)) { err = "expected host:port, got \"" + log::safe(item) + "\""; return false; }
            out.push_back(hp);
        }
        c.*m = std::move(out);
        return true;
    };
}
Setter milters(std::vector<MilterEndpoint> Config::*m) {
    return [m](Config& c, const std::string& v, std::string& err) {
        std::vector<MilterEndpoint> out;
        for (auto& item : split_list(v)) {
            MilterEndpoint e;
            if (!parse_milter_endpoint(item, e, err)) return false;
            out.push_back(std::move(e));
        }
        if (out.size() > 16) { err = "at most 16 milters"; return false; }
        c.*m = std::move(out);
        return true;
    };
}
// A milter macro list: names as Sendmail spells them, one character ("j", "_") or braced ("{client_addr}").
Setter macros(int stage) {
    return [stage](Config& c, const std::string& v, std::string& err) {
        std::vector<std::string> out;
        for (auto& item : split_list(v)) {
            bool ok = item.size() == 1 ? (std::isalnum(static_cast<unsigned char>(item[0])) || item[0] == '_')
                                       : item.size() > 2 && item.size() <= 64 && item.front() == '{' && item.back() == '}';
            for (std::size_t i = 1; ok && item.size() > 1 && i + 1 < item.size(); i++)
                ok = std::isalnum(static_cast<unsigned char>(item[i])) || item[i] == '_';
            if (!ok) { err = "invalid macro name \"" + log::safe(item) + "\" (expected x or {name})"; return false; }
            out.push_back(item);
        }
        if (out.size() > 64) { err = "at most 64 macros per stage"; return false; }
        c.milter_macros[stage] = std::move(out);
        return true;
    };
}
Setter domains(std::vector<std::string> Config::*m) {
    return [m](Config& c, const std::string& v, std::string& err) {
        std::vector<std::string> out;
        for (auto& item : split_list(v)) {
            std::string d = addr::lower(item);
            if (!addr::valid_domain(d)) { err = "invalid domain \"" + log::safe(item) + "\""; return false; }
            out.push_back(d);
        }
        c.*m = std::move(out);
        return true;
    };
}
Setter user(std::string Config::*m) {
    return [m](Config& c, const std::string& v, std::string& err) {
        if (v.empty() || v.size() > 32 || v.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-.") != std::string::npos) {
            err = "invalid user name \"" + log::safe(v) + "\"";
            return false;
        }
        c.*m = v;
        return true;
    };
}

}  // namespace

const std::vector<KeyDef>& key_defs() {
    static const std::vector<KeyDef> defs = {
        {{"hostname", "", "FQDN used in the greeting, EHLO and Received: (default: the system host name, "
          "made fully qualified via getaddrinfo when possible)"},
         [](Config& c, const std::string& v, std::string& err) {
             c.hostname = v.empty() ? default_hostname() : addr::lower(v);
             if (!addr::valid_domain(c.hostname)) { err = "invalid host name"; return false; }
             return true;
         }},
        {{"smtp_listen", "127.0.0.1:2525", "addresses for inbound SMTP (MX service); empty disables"}, listen(&Config::smtp_listen)},
        {{"submission_listen", "", "addresses for message submission (STARTTLS, then AUTH)"}, listen(&Config::submission_listen)},
        {{"smtps_listen", "", "addresses for submission over implicit TLS"}, listen(&Config::smtps_listen)},
        {{"metrics_listen", "", "addresses where mta-metrics serves Prometheus metrics over HTTP (GET /metrics); "
                                "empty disables (changes on restart)"}, listen(&Config::metrics_listen)},
        {{"metrics_top_destinations", "10", "destinations with series of their own in the per-destination "
                                            "metrics; the rest add up under destination=\"other\""},
         num(&Config::metrics_top_destinations, 1, 100)},
        {{"mynetworks", "127.0.0.0/8 ::1/128", "client networks allowed to relay"},
         [](Config& c, const std::string& v, std::string& err) { return parse_networks(v, c.mynetworks, nullptr, err); }},
        {{"local_domains", "localhost", "domains delivered on this host: to Maildirs, or over LMTP (see local_transport)"}, domains(&Config::local_domains)},
        {{"relay_domains", "", "domains accepted from anyone and relayed onwards"}, domains(&Config::relay_domains)},
        {{"relayhost", "", "send all non-local mail via this host: [host] or [host]:port (no MX lookup), "
          "or host[:port] (its MX hosts)"}, str(&Config::relayhost)},
        {{"transport_map", "", "LMDB table (mtamap -t transport) of recipient domain -> smtp:[host]:port, smtp:host, lmtp:..., "
                               "local:, error:5.x.y text or retry:4.x.y text; overrides relayhost and MX"}, path(&Config::transport_map)},
        {{"smtp_tls_policy_map", "", "LMDB table (mtamap -t tls_policy) of recipient domain -> TLS level; "
                                     "overrides smtp_tls_level per destination"}, path(&Config::smtp_tls_policy_map)},
        {{"destination_policy", "", "LMDB table (mtamap -t destination_policy) of recipient domain or next hop -> "
                                    "max_connections=N max_per_minute=N max_per_hour=N adaptive=yes|no"},
         path(&Config::destination_policy)},
        {{"source_addresses", "", "LMDB table (mtamap -t source_addresses) of outbound source address -> helo=NAME "
                                  "pool=NAME,... warmup=N,N,... (messages per day and destination class while it warms up)"},
         path(&Config::source_addresses)},
        {{"sender_source_pools", "", "LMDB table (mtamap -t sender_pools) of sender domain -> source pools to send "
                                     "from, in order (later pools take the overflow); destination_policy pool= applies "
                                     "to senders without an entry"},
         path(&Config::sender_source_pools)},
        {{"destination_slowdown_patterns", "", "reply texts (case-insensitive, comma-separated) that mean \"slow down\" "
          "besides the rate_limited bounce class; such a reply cuts its destination's rate"},
         [](Config& c, const std::string& v, std::string& err) {
             c.slowdown_patterns.clear();
             std::string cur;
             for (std::size_t i = 0; i <= v.size(); i++) {
                 if (i == v.size() || v[i] == ',') {
                     std::string t = trim(cur);
                     if (!t.empty()) c.slowdown_patterns.push_back(addr::lower(t));
                     cur.clear();
                 } else {
                     cur += v[i];
                 }
             }
             if (c.slowdown_patterns.size() > 100) { err = "at most 100 patterns"; return false; }
             return true;
         }},
        {{"destination_slowdown_time", "10m", "how long a rate cut by a slow-down reply lasts before the rate "
          "grows back one step (x1.5 per step)"}, duration(&Config::destination_slowdown_time)},
        {{"spool_dir", "run/spool", "spool root (root-owned): control socket, role chroots, and queue/ (mta-queue's LMDB, bodies, maildrop)"}, path(&Config::spool_dir)},
        {{"mail_dir", "run/mail", "Maildir root: <mail_dir>/<localpart>/new/"}, path(&Config::mail_dir)},
        {{"libexec_dir", "", "where the role binaries live (default: beside mtad)"}, path(&Config::libexec_dir)},
        {{"control_socket", "", "admin control socket (default: <spool_dir>/mtad.sock)"}, path(&Config::control_socket)},
        {{"tls_cert", "", "PEM certificate chain for inbound STARTTLS and smtps"}, path(&Config::tls_cert)},
        {{"tls_key", "", "PEM private key for tls_cert"}, path(&Config::tls_key)},
        {{"auth_users", "", "LMDB table of SMTP AUTH users (built with mtamap)"}, path(&Config::auth_users)},
        {{"local_recipients", "", "LMDB table of valid local parts; unset accepts any valid local part"}, path(&Config::local_recipients)},
        {{"alias_map", "", "LMDB aliases table (mtamap -t aliases, newaliases): local part -> addresses, "
          "for local_domains"}, path(&Config::alias_map)},
        {{"virtual_map", "", "LMDB virtual alias table (mtamap -t virtual): user@domain or @domain -> addresses; "
          "a domain-only key makes a virtual alias domain"}, path(&Config::virtual_map)},
        {{"message_size_limit", "10240000", "largest accepted message in bytes (at least 1k)"},
         [](Config& c, const std::string& v, std::string& err) {
             if (!parse_size(v, c.message_size_limit) || c.message_size_limit < 1024) {
                 err = "expected a size of at least 1024 bytes (e.g. 10240000 or 10m), got \"" + log::safe(v) + "\"";
                 return false;
             }
             return true;
         }},
        {{"queue_minfree", "0", "bytes that must stay free on the queue's filesystem: MAIL gets 452 4.3.1 when less "
          "than this plus the declared SIZE is free, and always when less than 1.5 x message_size_limit is (Postfix's floor)"},
         [](Config& c, const std::string& v, std::string& err) {
             if (!parse_size(v, c.queue_minfree)) {
                 err = "expected a size in bytes (e.g. 0, 100000000 or 100m), got \"" + log::safe(v) + "\"";
                 return false;
             }
             return true;
         }},
        {{"recipient_limit", "1000", "recipients per message (452 4.5.3 past it)"}, num(&Config::recipient_limit, 1, 100000)},
        {{"mail_owner", "_mtalocal", "user owning the Maildirs (local delivery runs as it)"}, user(&Config::mail_owner)},
        {{"smtpd_user", "_mtad", "user of mta-smtpd"}, user(&Config::smtpd_user)},
        {{"queue_user", "_mtaq", "user of mta-queue (owns <spool_dir>/queue, not spool_dir)"}, user(&Config::queue_user)},
        {{"smtp_user", "_mtac", "user of mta-smtp"}, user(&Config::smtp_user)},
        {{"resolver_user", "_mtar", "user of mta-resolver"}, user(&Config::resolver_user)},
        {{"metrics_user", "_mtametrics", "user of mta-metrics"}, user(&Config::metrics_user)},
        {{"msgauth_user", "_mtaauth", "user of mta-msgauth (the group that may read the DKIM key files)"}, user(&Config::msgauth_user)},
        {{"dkim_keys", "", "LMDB table (mtamap -t dkim) of DKIM signing keys, from lines DOMAIN SELECTOR rsa|ed25519 KEYFILE; "
          "mail from mynetworks or authenticated clients whose From: domain (or a parent domain) is listed is signed "
          "with every key of that domain; empty: nothing is signed"}, path(&Config::dkim_keys)},
        {{"msgauth_verify", "yes", "check DKIM, SPF (MAIL FROM and HELO) and DMARC of mail from clients neither in "
          "mynetworks nor authenticated, adding Authentication-Results and Received-SPF"}, yes_no(&Config::msgauth_verify)},
        {{"msgauth_default_action", "tempfail", "what mta-smtpd does with a message when mta-msgauth is down or does not "
          "answer within msgauth_timeout: tempfail (451 4.7.0, the client retries) or accept (queued unsigned and unchecked)"},
         choice(&Config::msgauth_default_action, {"tempfail", "accept"})},
        {{"msgauth_timeout", "60s", "time mta-smtpd waits for mta-msgauth's verdict on a message (then msgauth_default_action)"},
         duration(&Config::msgauth_timeout)},
        {{"dkim_max_signatures", "8", "DKIM-Signature fields verified per message, from the top; the rest are ignored"},
         num(&Config::dkim_max_signatures, 1, 100)},
        {{"spf_action", "none", "none (SPF only reported) or reject_fail (an SPF fail of MAIL FROM gets 550 5.7.23)"},
         choice(&Config::spf_action, {"none", "reject_fail"})},
        {{"smtpd_milters", "", "milters (Sendmail's content filter protocol) asked about every SMTP session and message, in "
          "order: unix:/path or inet:host:port (host an IP address or localhost); mtad connects them (mta-smtpd(8) MILTER)"},
         milters(&Config::smtpd_milters)},
        {{"non_smtpd_milters", "", "milters asked about mail submitted with sendmail(1), picked up by mta-queue; the same "
          "syntax as smtpd_milters"}, milters(&Config::non_smtpd_milters)},
        {{"milter_default_action", "tempfail", "what happens when a milter is down, too slow or breaks the protocol: tempfail "
          "(451 4.7.1 to this and later commands of the session), reject (550 5.7.1) or accept (go on without that milter)"},
         choice(&Config::milter_default_action, {"tempfail", "accept", "reject"})},
        {{"milter_connect_timeout", "30s", "time to connect to a milter and get its option negotiation"},
         duration(&Config::milter_connect_timeout)},
        {{"milter_command_timeout", "30s", "time a milter has to answer connect, HELO, MAIL, RCPT, DATA, a header and end of headers"},
         duration(&Config::milter_command_timeout)},
        {{"milter_content_timeout", "300s", "time a milter has to answer a body chunk or the end of the message (progress restarts it)"},
         duration(&Config::milter_content_timeout)},
        {{"milter_connect_macros", "j {daemon_name} {daemon_addr} v _ {client_addr} {client_port} {client_name}",
          "macros sent to milters with the connection (a milter's own list replaces this)"}, macros(0)},
        {{"milter_helo_macros", "{tls_version} {cipher} {cipher_bits}", "macros sent with HELO/EHLO"}, macros(1)},
        {{"milter_mail_macros", "i {auth_type} {auth_authen} {mail_addr} {mail_host} {mail_mailer}", "macros sent with MAIL FROM"},
         macros(2)},
        {{"milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}", "macros sent with RCPT TO"}, macros(3)},
        {{"milter_data_macros", "i", "macros sent with DATA"}, macros(4)},
        {{"milter_end_of_data_macros", "i", "macros sent with the end of the message"}, macros(5)},
        {{"milter_end_of_header_macros", "i", "macros sent with the end of the headers"}, macros(6)},
        {{"milter_unknown_command_macros", "", "macros sent with an unknown SMTP command"}, macros(7)},
        {{"dmarc_action", "none", "none (DMARC only reported) or enforce (p=reject gets 550 5.7.1; p=quarantine "
          "queues the message held, with the reason in mtaqueue show)"}, choice(&Config::dmarc_action, {"none", "enforce"})},
        {{"dns_forwarder", "", "send DNS queries to this server (IP address, optionally addr@port) instead of full recursion"},
         [](Config& c, const std::string& v, std::string& err) {
             unsigned char buf[16];
             std::string h = v;
             auto at = h.find('@');  // unbound's "addr@port"
             std::string a = h.substr(0, at);
             if (!v.empty() && inet_pton(AF_INET, a.c_str(), buf) != 1 && inet_pton(AF_INET6, a.c_str(), buf) != 1) {
                 err = "expected an IP address (optionally addr@port)";
                 return false;
             }
             c.dns_forwarder = v;
             return true;
         }},
        {{"dns_insecure_domains", "", "private zones answered without DNSSEC validation"}, domains(&Config::dns_insecure_domains)},
        {{"dns_trust_anchors", "", "file of extra DNSSEC trust anchors (DS/DNSKEY lines)"}, path(&Config::dns_trust_anchors)},
        {{"smtp_port", "25", "TCP port for outbound SMTP"},
         [](Config& c, const std::string& v, std::string& err) {
             uint64_t n;
             if (!parse_u64(v, n) || n == 0 || n > 65535) { err = "expected a port 1..65535"; return false; }
             c.smtp_port = uint16_t(n);
             return true;
         }},
        {{"smtp_bind_address", "", "outbound: the local IPv4 address mta-smtp connects from (empty: the kernel's choice)"},
         ip_literal(&Config::smtp_bind_address, AF_INET)},
        {{"smtp_bind_address6", "", "outbound: the local IPv6 address mta-smtp connects from (empty: the kernel's choice)"},
         ip_literal(&Config::smtp_bind_address6, AF_INET6)},
        {{"smtp_helo_name", "", "outbound: the name mta-smtp gives in EHLO/HELO (empty: hostname); it should be the "
          "reverse DNS name of the source address"},
         [](Config& c, const std::string& v, std::string& err) {
             if (!v.empty() && !addr::valid_domain(addr::lower(v))) { err = "expected a host name"; return false; }
             c.smtp_helo_name = addr::lower(v);
             return true;
         }},
        {{"smtp_connect_timeout", "30s", "outbound: time allowed for the TCP connection before the next address is tried"},
         duration(&Config::smtp_connect_timeout)},
        {{"smtp_helo_timeout", "60s", "outbound: time allowed for the server's greeting (Postfix smtp_helo_timeout); a server "
          "slower than this is skipped for the next MX"},
         duration(&Config::smtp_helo_timeout)},
        {{"smtp_tls_level", "may", "outbound TLS: none, may (opportunistic STARTTLS), encrypt (TLS required, unverified), "
                                   "dane (RFC 7672: verified TLS where DNSSEC-signed TLSA records exist, else may), "
                                   "mta-sts (DANE where it applies, else the domain's RFC 8461 policy)"},
         [](Config& c, const std::string& v, std::string& err) {
             if (v != "none" && v != "may" && v != "encrypt" && v != "dane" && v != "mta-sts") {
                 err = "expected none, may, encrypt, dane or mta-sts";
                 return false;
             }
             c.smtp_tls_level = v;
             return true;
         }},
        {{"smtp_tls_ca_file", "/etc/ssl/certs/ca-certificates.crt",
          "CA certificates (PEM) for WebPKI checks: MTA-STS policy fetches and MX certificates under MTA-STS enforce"},
         path(&Config::smtp_tls_ca_file)},
        {{"mta_sts_port", "443", "TCP port of MTA-STS policy servers (change only for tests)"},
         [](Config& c, const std::string& v, std::string& err) {
             uint64_t n;
             if (!parse_u64(v, n) || n == 0 || n > 65535) { err = "expected a port 1..65535"; return false; }
             c.mta_sts_port = uint16_t(n);
             return true;
         }},
        {{"local_transport", "maildir", "delivery for local_domains: maildir (mta-local), or LMTP via mta-smtp: "
                                        "lmtp:unix:/path or lmtp:[IP address]:port"},
         [](Config& c, const std::string& v, std::string& err) {
             if (!check_local_transport(v, err)) return false;
             c.local_transport = v;
             return true;
         }},
        {{"smtpd_processes", "2", "number of mta-smtpd processes"}, num(&Config::smtpd_processes, 1, 64)},
        {{"smtp_processes", "2", "number of mta-smtp processes"}, num(&Config::smtp_processes, 1, 64)},
        {{"smtpd_line_length_limit", "2048", "longest SMTP command line accepted"}, num(&Config::smtpd_line_length_limit, 512, 65536)},
        {{"smtpd_timeout", "300s", "idle time allowed between client commands"}, duration(&Config::smtpd_timeout)},
        {{"smtpd_error_limit", "20", "errors before the session is closed"}, num(&Config::smtpd_error_limit, 1, 1000)},
        {{"smtpd_junk_command_limit", "100", "commands without progress (NOOP RSET VRFY EXPN HELP HELO EHLO) "
          "before the session is closed with 421 4.7.0; an accepted MAIL, RCPT or message starts the count again"},
         num(&Config::smtpd_junk_command_limit, 1, 100000)},
        {{"smtpd_auth_failure_limit", "3", "failed AUTH attempts before the session is closed (421 4.7.0)"},
         num(&Config::smtpd_auth_failure_limit, 1, 100)},
        {{"smtpd_auth_failure_delay", "1s", "pause before answering a failed AUTH"},
         duration(&Config::smtpd_auth_failure_delay, false)},
        {{"smtpd_client_connection_limit", "50", "concurrent connections per client IP, counted by mtad across all mta-smtpd processes (421 4.7.0 past it; see smtpd_client_event_limit_exceptions)"}, num(&Config::smtpd_client_connection_limit, 1, 100000)},
        {{"smtpd_max_connections", "2000", "concurrent connections per mta-smtpd process"}, num(&Config::smtpd_max_connections, 1, 1000000)},
        {{"smtpd_client_connection_rate_limit", "0", "connections per client IP per minute across all mta-smtpd "
          "processes, then 421 4.7.0 (0 = no limit; see smtpd_client_event_limit_exceptions)"}, num(&Config::smtpd_client_connection_rate_limit, 0, 1000000)},
        {{"smtpd_client_auth_failure_rate_limit", "0", "failed AUTH attempts per client IP per minute across "
          "sessions and mta-smtpd processes; then AUTH gets 421 4.7.0 (0 = no limit; see smtpd_client_event_limit_exceptions)"},
         num(&Config::smtpd_client_auth_failure_rate_limit, 0, 1000000)},
        {{"smtpd_client_event_limit_exceptions", "$mynetworks", "clients exempt from smtpd_client_connection_limit, "
          "smtpd_client_connection_rate_limit and smtpd_client_auth_failure_rate_limit: networks, and $mynetworks "
          "for the networks in mynetworks (empty: nobody is exempt)"},
         [](Config& c, const std::string& v, std::string& err) {
             return parse_networks(v, c.client_limit_exceptions, &c.client_limit_exceptions_mynetworks, err);
         }},
        {{"smtpd_dnsbl_zones", "", "DNS block lists asked about each client at connect: zone[=127.0.0.N pattern][*weight], "
          "as Postfix's postscreen_dnsbl_sites; a client whose weights add up to smtpd_dnsbl_threshold gets "
          "554 5.7.1 at RCPT (empty: no lookups)"},
         [](Config& c, const std::string& v, std::string& err) { return parse_dnsbl_zones(v, c.dnsbl_zones, err); }},
        {{"smtpd_dnsbl_threshold", "1", "the weight at which a client counts as listed"},
         [](Config& c, const std::string& v, std::string& err) {
             long long n = 0;
             auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
             if (ec != std::errc() || p != v.data() + v.size() || n < 1 || n > 100000) {
                 err = "expected a number from 1 to 100000";
                 return false;
             }
             c.smtpd_dnsbl_threshold = int(n);
             return true;
         }},
        {{"smtpd_dnsbl_allowlist", "", "client networks never looked up in smtpd_dnsbl_zones (mynetworks never are)"},
         [](Config& c, const std::string& v, std::string& err) { return parse_networks(v, c.dnsbl_allowlist, nullptr, err); }},
        {{"smtpd_min_data_rate", "500", "slowest DATA/BDAT transfer in bytes/s, measured over "
          "smtpd_min_data_rate_window; slower clients get 421 4.4.2 (0 = no limit)"}, num(&Config::smtpd_min_data_rate, 0, 1000000000)},
        {{"smtpd_min_data_rate_window", "30s", "time over which smtpd_min_data_rate is measured"},
         duration(&Config::smtpd_min_data_rate_window)},
        {{"hop_count_limit", "50", "Received: headers allowed before a loop is declared"}, num(&Config::hop_count_limit, 1, 1000)},
        {{"minimal_backoff_time", "5m", "first retry delay"}, duration(&Config::minimal_backoff_time)},
        {{"maximal_backoff_time", "1h", "longest retry delay"}, duration(&Config::maximal_backoff_time)},
        {{"maximal_queue_lifetime", "5d", "how long a message may stay deferred"}, duration(&Config::maximal_queue_lifetime)},
        {{"bounce_queue_lifetime", "1d", "lifetime of mail from the null sender"}, duration(&Config::bounce_queue_lifetime)},
        {{"delay_warning_time", "4h", "send one delay DSN after this long (0 disables)"}, duration(&Config::delay_warning_time, false)},
        {{"suppress_hard_bounces", "no", "remember recipients that hard-bounced (bounce class bad_mailbox or "
          "bad_domain) for suppression_ttl and bounce later mail to them at once, without a connection"},
         yes_no(&Config::suppress_hard_bounces)},
        {{"suppression_ttl", "30d", "how long a hard-bounced recipient stays on the suppression list"},
         duration(&Config::suppression_ttl)},
        {{"tlsrpt_reports", "no", "collect the outcome of outbound TLS under DANE and MTA-STS policies and mail a "
          "daily RFC 8460 report to each policy domain that publishes a _smtp._tls record with a mailto: rua"},
         yes_no(&Config::tlsrpt_reports)},
        {{"tlsrpt_from", "", "the From: address of TLS-RPT reports, also their contact-info (empty: postmaster@hostname)"},
         [](Config& c, const std::string& v, std::string& err) {
             std::size_t at = v.rfind('@');
             if (!v.empty() && (at == std::string::npos || at == 0 || !addr::valid_domain(addr::lower(v.substr(at + 1))) ||
                                v.find_first_of(" \t<>\"") != std::string::npos)) {
                 err = "expected an address local@domain";
                 return false;
             }
             c.tlsrpt_from = v;
             return true;
         }},
        {{"tlsrpt_organization", "", "the organization-name of TLS-RPT reports (empty: hostname)"},
         [](Config& c, const std::string& v, std::string& err) {
             if (v.size() > 200 || v.find_first_of("\r\n") != std::string::npos) { err = "expected a short name"; return false; }
             c.tlsrpt_organization = v;
             return true;
         }},
        {{"delivery_concurrency", "20", "concurrent deliveries per destination (upper bound)"}, num(&Config::delivery_concurrency, 1, 1000)},
        {{"log_level", "info", "debug, info, warn or error"},
         [](Config& c, const std::string& v, std::string& err) {
             log::Level l;
             if (!log::parse_level(v, l)) { err = "expected debug, info, warn or error"; return false; }
             c.log_level = v;
             return true;
         }},
        {{"log_format", "kv", "kv (key=value pairs, as Postfix admins grep them) or json (one JSON object per line)"},
         [](Config& c, const std::string& v, std::string& err) {
             if (v != "kv" && v != "json") { err = "expected kv or json"; return false; }
             c.log_format = v;
             return true;
         }},
        {{"maillog_file", "", "an absolute path: without -d, every process logs to this file (opened by mtad, "
                              "appended to) instead of syslog; for hosts without a syslog daemon"},
         [](Config& c, const std::string& v, std::string& err) {
             if (!v.empty() && v[0] != '/') { err = "expected an absolute path"; return false; }
             c.maillog_file = v;
             return true;
         }},
    };
    return defs;
}
}  // namespace mta::config_detail
