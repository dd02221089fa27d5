// Control socket client: connect, write the command line, read until mtad closes.
#include "common/control_client.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/fd.h"

namespace mta {

bool control_request(const std::string& socket_path, const std::string& command, std::string& answer, std::string& err) {
    return control_stream(socket_path, command, [&](std::string_view piece) { answer.append(piece); }, err);
}

bool control_stream(const std::string& socket_path, const std::string& command,
                    const std::function<void(std::string_view)>& sink, std::string& err) {
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof sa.sun_path) { err = "control socket path too long"; return false; }
    memcpy(sa.sun_path, socket_path.c_str(), socket_path.size());
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        err = "cannot reach mtad at " + socket_path + ": " + strerror(errno) + " (is it running?)";
        return false;
    }
    struct timeval tv = {30, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string line = command + "\n";
    if (write(fd.get(), line.data(), line.size()) != ssize_t(line.size())) {
        err = std::string("write: ") + strerror(errno);
        return false;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(fd.get(), buf, sizeof buf)) > 0) sink(std::string_view(buf, std::size_t(n)));
    if (n < 0) { err = std::string("read: ") + strerror(errno); return false; }
    return true;
}

std::string ResolveAnswer::status() const {
    std::string s = rcode == 0 ? "NOERROR" : rcode == 2 ? "SERVFAIL" : rcode == 3 ? "NXDOMAIN"
                  : rcode == 65535 ? "FAILED" : "rcode " + std::to_string(rcode);
    s += ", " + dnssec;
    if (!text.empty()) s += ", " + text;
    return s;
}

// Trusts the control socket's text format (mtad made the record text printable).
bool control_resolve(const std::string& socket_path, const std::string& name, int qtype, ResolveAnswer& a,
                     std::string& err) {
    std::string raw;
    if (!control_request(socket_path, "resolve " + name + " " + std::to_string(qtype), raw, err)) return false;
    if (raw.rfind("error:", 0) == 0) {
        err = raw.substr(0, raw.find('\n'));
        return false;
    }
    std::istringstream in(raw);
    std::string head;
    std::getline(in, head);
    if (sscanf(head.c_str(), "rcode=%ld", &a.rcode) != 1) {
        err = "unexpected answer: " + head;
        return false;
    }
    if (auto p = head.find("dnssec="); p != std::string::npos) a.dnssec = head.substr(p + 7, head.find(' ', p) - p - 7);
    if (auto p = head.find("text=\""); p != std::string::npos) a.text = head.substr(p + 6, head.rfind('"') - p - 6);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) a.records.push_back(line);
    return true;
}

}  // namespace mta
