// Parsing of LMTP next hops into connectable Targets (unix socket path or bracketed address:port).
#include "smtp-client/lmtp_nexthop.h"

#include <charconv>
#include <cstring>
#include <sys/un.h>

namespace mta::smtp {

bool parse_lmtp_nexthop(std::string_view nexthop, Target& out, std::string& err) {
    if (!is_lmtp_nexthop(nexthop)) { err = "not an LMTP next hop"; return false; }
    std::string_view rest = nexthop.substr(5);
    if (rest.rfind("unix:", 0) == 0) {
        std::string_view path = rest.substr(5);
        sockaddr_un sun{};
        if (path.empty() || path.front() != '/' || path.size() >= sizeof sun.sun_path ||
            path.find('\0') != std::string_view::npos) {
            err = "bad unix socket path";
            return false;
        }
        out = Target{};
        out.host = "localhost";
        out.ip = "unix:" + std::string(path);
        out.port = 0;
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, path.data(), path.size());
        memcpy(&out.sa, &sun, sizeof sun);
        out.salen = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
        return true;
    }
    if (rest.empty() || rest.front() != '[') { err = "expected lmtp:unix:/path or lmtp:[host]:port"; return false; }
    auto close = rest.find("]:");
    if (close == std::string_view::npos) { err = "expected lmtp:[host]:port"; return false; }
    std::string host(rest.substr(1, close - 1));
    std::string_view ps = rest.substr(close + 2);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
    if (ec != std::errc() || p != ps.data() + ps.size() || port == 0 || port > 65535) { err = "bad port"; return false; }
    if (!make_target(host, host, uint16_t(port), out)) { err = "LMTP host must be an IP address"; return false; }
    return true;
}

}  // namespace mta::smtp
