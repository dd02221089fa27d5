// mta.conf parsing and validation. A bad value is an error naming file, line and key; never a guess.
#include "common/config.h"
#include "common/config_keys.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/address.h"
#include "common/log.h"

namespace mta {
namespace {

using namespace config_detail;


bool prefix_match(const unsigned char* a, const unsigned char* b, int bits) {
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, std::size_t(full)) != 0) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool domain_in(const std::vector<std::string>& list, std::string_view d) {
    for (auto& x : list)
        if (x == d) return true;
    return false;
}

}  // namespace

std::string HostPort::str() const {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::vector<std::string> split_list(std::string_view s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == ' ' || c == ',' || c == '\t') {
            if (!cur.empty()) out.push_back(std::move(cur));
            cur.clear();
        } else {
            cur.push_back(c);
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

bool parse_cidr(std::string_view s, Cidr& out) {
    std::string a(s), bits;
    auto slash = a.find('/');
    if (slash != std::string::npos) { bits = a.substr(slash + 1); a.resize(slash); }
    if (a.size() > 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
    Cidr c;
    if (inet_pton(AF_INET, a.c_str(), c.addr) == 1) c.family = AF_INET, c.prefix = 32;
    else if (inet_pton(AF_INET6, a.c_str(), c.addr) == 1) c.family = AF_INET6, c.prefix = 128;
    else return false;
    if (slash != std::string::npos) {  // "127.0.0.1/" is a typo, not a /32
        uint64_t n;
        if (!parse_u64(bits, n) || n > uint64_t(c.prefix)) return false;
        c.prefix = int(n);
    }
    // Host bits after the prefix ("10.1.2.3/8") are a typo that would silently trust a whole network:
    // refused, as Postfix refuses "non-null host address bits".
    int len = c.family == AF_INET ? 4 : 16;
    for (int i = 0; i < len; i++) {
        int keep = std::clamp(c.prefix - i * 8, 0, 8);
        unsigned mask = keep == 8 ? 0xffu : (0xff00u >> keep) & 0xffu;
        if (c.addr[i] & ~mask & 0xffu) return false;
    }
    out = c;
    return true;
}

bool Cidr::matches(const sockaddr* sa) const {
    if (!sa) return false;
    if (sa->sa_family == AF_INET && family == AF_INET)
        return prefix_match(reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr), addr, prefix);
    if (sa->sa_family == AF_INET6) {
        auto a6 = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
        if (family == AF_INET6) return prefix_match(a6, addr, prefix);
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (family == AF_INET && memcmp(a6, v4mapped, 12) == 0) return prefix_match(a6 + 12, addr, prefix);
    }
    return false;
}

bool parse_hostport(std::string_view s, HostPort& out, bool allow_port_zero) {
    std::string host;
    std::string_view port;
    if (!s.empty() && s[0] == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
        host = std::string(s.substr(1, close - 1));
        port = s.substr(close + 2);
        unsigned char buf[16];
        if (inet_pton(AF_INET6, host.c_str(), buf) != 1) return false;
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos) return false;
        host = std::string(s.substr(0, colon));
        port = s.substr(colon + 1);
        if (host.find(':') != std::string::npos) return false;
        if (!host.empty() && !addr::valid_domain(addr::lower(host))) return false;
    }
    uint64_t p;
    if (!parse_u64(port, p) || (p == 0 && !allow_port_zero) || p > 65535) return false;
    out.host = host;
    out.port = uint16_t(p);
    return true;
}

static_assert(kMaxSocketPath + 1 == sizeof(sockaddr_un::sun_path), "kMaxSocketPath is sun_path without its NUL");

bool valid_socket_path(std::string_view p) {
    return !p.empty() && p[0] == '/' && p.size() <= kMaxSocketPath &&
           p.find_first_of(std::string_view(" \t\0", 3)) == std::string_view::npos;
}

bool parse_milter_endpoint(std::string_view s, MilterEndpoint& out, std::string& err) {
    MilterEndpoint m;
    m.spec = std::string(s);
    std::string_view rest;
    if (s.rfind("unix:", 0) == 0 || s.rfind("local:", 0) == 0) {
        rest = s.substr(s.find(':') + 1);
        if (!valid_socket_path(rest)) {
            err = "expected unix:/absolute/socket/path (at most " + std::to_string(kMaxSocketPath) + " bytes)";
            return false;
        }
        m.path = std::string(rest);
    } else if (s.rfind("inet:", 0) == 0) {
        HostPort hp;
        if (!parse_hostport(s.substr(5), hp)) {
            err = "expected inet:host:port";
            return false;
        }
        unsigned char buf[16];
        if (hp.host == "localhost") hp.host = "127.0.0.1";
        if (inet_pton(AF_INET, hp.host.c_str(), buf) != 1 && inet_pton(AF_INET6, hp.host.c_str(), buf) != 1) {
            err = "milter host must be an IP address or localhost, got \"" + log::safe(hp.host) + "\" (mtad does not resolve it)";
            return false;
        }
        m.host = hp.host;
        m.port = hp.port;
    } else {
        err = "expected unix:/path or inet:host:port, got \"" + log::safe(std::string(s)) + "\"";
        return false;
    }
    out = std::move(m);
    return true;
}

bool parse_duration(std::string_view s, uint64_t& seconds) {
    if (s.empty()) return false;
    uint64_t mult = 1;
    char last = s.back();
    if (last < '0' || last > '9') {
        switch (last) {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        case 'w': mult = 7 * 86400; break;
        default: return false;
        }
        s.remove_suffix(1);
    }
    uint64_t n;
    if (!parse_u64(s, n) || n > (uint64_t(1) << 40) / mult) return false;
    seconds = n * mult;
    return true;
}

bool parse_size(std::string_view s, uint64_t& bytes) {
    if (s.empty()) return false;
    uint64_t mult = 1;
    char last = char(s.back() | 0x20);
    if (last == 'k') mult = 1024;
    else if (last == 'm') mult = 1024 * 1024;
    else if (last == 'g') mult = 1024ull * 1024 * 1024;
    if (mult != 1) s.remove_suffix(1);
    uint64_t n;
    if (!parse_u64(s, n) || n > (uint64_t(1) << 50) / mult) return false;
    bytes = n * mult;
    return true;
}

std::string ConfigError::str() const {
    std::string s = file;
    if (line > 0) s += ":" + std::to_string(line);
    s += ": ";
    if (!key.empty()) s += key + ": ";
    return s + message;
}

const std::vector<KeyInfo>& config_keys() {
    static const std::vector<KeyInfo> keys = [] {
        std::vector<KeyInfo> k;
        for (auto& d : key_defs()) k.push_back(d.info);
        return k;
    }();
    return keys;
}

bool parse_config(std::string_view text, const std::string& filename, Config& out, std::vector<ConfigError>& errors) {
    Config c;
    auto& defs = key_defs();
    std::vector<std::string> vals(defs.size());
    std::vector<int> lines(defs.size(), 0);
    for (std::size_t i = 0; i < defs.size(); i++) vals[i] = defs[i].info.default_value;
    std::size_t before = errors.size();
    int lineno = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
        lineno++;
        std::string line = trim(raw);
        if (line.empty() || line[0] == '#') continue;
        auto eq = line.find('=');
        if (eq == std::string::npos) {
            errors.push_back({filename, lineno, "", "expected \"key = value\""});
            continue;
        }
        std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
        std::size_t i = 0;
        while (i < defs.size() && key != defs[i].info.name) i++;
        if (i == defs.size()) {
            errors.push_back({filename, lineno, log::safe(key), "unknown configuration key"});
            continue;
        }
        if (value.find('\0') != std::string::npos) {
            errors.push_back({filename, lineno, key, "NUL byte in value"});
            continue;
        }
        if (lines[i])  // as Postfix: the last one wins, with a warning
            c.warnings.push_back(ConfigError{filename, lineno, key,
                                             "overrides the earlier setting on line " + std::to_string(lines[i])}.str());
        vals[i] = value;
        lines[i] = lineno;
    }
    for (std::size_t i = 0; i < defs.size(); i++) {
        std::string err;
        if (!defs[i].set(c, vals[i], err)) errors.push_back({filename, lines[i], defs[i].info.name, err});
        c.values.emplace_back(defs[i].info.name, vals[i]);
    }
    if (errors.size() != before) return false;
    if (c.control_socket.empty()) c.control_socket = c.spool_dir + "/mtad.sock";
    c.text = std::string(text);
    c.source = filename;
    out = std::move(c);
    return true;
}

bool load_config(const std::string& path, bool missing_ok, Config& out, std::vector<ConfigError>& errors) {
    constexpr std::size_t kMaxConfigFile = 1024 * 1024;
    // O_NONBLOCK and a plain-file check: a directory must not read as an empty file, a FIFO must not hang.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (missing_ok && errno == ENOENT) return parse_config("", "(built-in defaults)", out, errors);
        errors.push_back({path, 0, "", std::string("cannot read: ") + strerror(errno)});
        return false;
    }
    struct stat st;
    std::string text, why;
    if (fstat(fd, &st) != 0) why = std::string("cannot read: ") + strerror(errno);
    else if (!S_ISREG(st.st_mode)) why = "not a plain file";
    else if (uint64_t(st.st_size) > kMaxConfigFile) why = "file too large";
    char buf[65536];
    while (why.empty()) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) why = std::string("cannot read: ") + strerror(errno);
        if (n <= 0) break;
        text.append(buf, std::size_t(n));
        if (text.size() > kMaxConfigFile) why = "file too large";
    }
    ::close(fd);
    if (!why.empty()) {
        errors.push_back({path, 0, "", why});
        return false;
    }
    return parse_config(text, path, out, errors);
}

void absolutize_paths(Config& c) {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return;
    static const struct { const char* key; std::string Config::*member; } paths[] = {
        {"spool_dir", &Config::spool_dir}, {"mail_dir", &Config::mail_dir},
        {"control_socket", &Config::control_socket}, {"libexec_dir", &Config::libexec_dir},
        {"tls_cert", &Config::tls_cert}, {"tls_key", &Config::tls_key}, {"auth_users", &Config::auth_users},
        {"local_recipients", &Config::local_recipients}, {"alias_map", &Config::alias_map},
        {"virtual_map", &Config::virtual_map}, {"transport_map", &Config::transport_map},
        {"smtp_tls_policy_map", &Config::smtp_tls_policy_map}, {"destination_policy", &Config::destination_policy},
        {"source_addresses", &Config::source_addresses}, {"sender_source_pools", &Config::sender_source_pools},
        {"dns_trust_anchors", &Config::dns_trust_anchors}, {"smtp_tls_ca_file", &Config::smtp_tls_ca_file},
        {"dkim_keys", &Config::dkim_keys}};
    std::string appended;
    for (auto& p : paths) {
        std::string& v = c.*p.member;
        if (v.empty() || v[0] == '/') continue;
        v = std::string(cwd) + "/" + v;
    }
    // Re-derive the textual values so mtaconf/children see what is in force.
    auto set_text = [&](const char* key, const std::string& v) {
        for (auto& [k, val] : c.values)
            if (k == key && val != v && !v.empty()) {
                val = v;
                appended += std::string(key) + " = " + v + "\n";
            }
    };
    for (auto& p : paths) set_text(p.key, c.*p.member);
    set_text("hostname", c.hostname);  // the looked-up default: chrooted roles cannot look it up
    if (!appended.empty()) {
        if (!c.text.empty() && c.text.back() != '\n') c.text += "\n";
        c.text += "# absolute paths and default host name resolved by mtad\n" + appended;
    }
}

std::string config_value_text(const Config& c, std::string_view key) {
    for (auto& [k, v] : c.values)
        if (k == key) return v;
    return "";
}

bool Config::is_local_domain(std::string_view d) const { return domain_in(local_domains, d); }
bool Config::is_relay_domain(std::string_view d) const { return domain_in(relay_domains, d); }
bool Config::in_mynetworks(const sockaddr* sa) const {
    for (auto& n : mynetworks)
        if (n.matches(sa)) return true;
    return false;
}
bool Config::exempt_from_client_limits(const sockaddr* sa) const {
    if (client_limit_exceptions_mynetworks && in_mynetworks(sa)) return true;
    for (auto& n : client_limit_exceptions)
        if (n.matches(sa)) return true;
    return false;
}

}  // namespace mta
