// mtad's side of the milters (mta-smtpd(8) MILTER). mta-smtpd runs chrooted in an empty directory (and
// mta-queue, for non_smtpd_milters, in the queue directory): neither can reach a unix-socket milter,
// and neither may make mtad open a path of its choosing. So each names a milter by its position in its
// list (smtpd_milters; non_smtpd_milters for the queue), with the spec it has for that position; mtad
// checks the pair against its own configuration (a mismatch is a reload race, answered with a
// failure), makes a non-blocking socket, starts connect(2) and passes the socket back. The smtpd
// sees the connection complete (or fail) on the socket itself, so mtad never waits for a milter.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/wire/wire.h"
#include "master/master.h"

namespace mta::master {
namespace {

// A socket connected (or connecting) to `m`; invalid with errno set on failure.
UniqueFd start_connect(const MilterEndpoint& m) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (!m.path.empty()) {
        auto* un = reinterpret_cast<sockaddr_un*>(&ss);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, m.path.data(), m.path.size());  // length checked by the config parser
        len = socklen_t(offsetof(sockaddr_un, sun_path) + m.path.size() + 1);
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        if (inet_pton(AF_INET, m.host.c_str(), &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons(m.port);
            len = sizeof *s4;
        } else if (inet_pton(AF_INET6, m.host.c_str(), &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons(m.port);
            len = sizeof *s6;
        } else {
            errno = EINVAL;
            return UniqueFd();
        }
    }
    UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fd;
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        int e = errno == EAGAIN ? ECONNREFUSED : errno;  // a unix listener with a full backlog
        fd.reset();
        errno = e;
    }
    return fd;
}

}  // namespace

// False for a message that is not a valid milter_connect from an smtpd (the caller kills the sender).
bool Master::on_milter_connect(Child& c, ipc::Message& m) {
    if (c.role != Role::smtpd && c.role != Role::queue) return false;
    wire::MilterConnect req;
    std::string err;
    if (!wire::decode(m, req, err)) return false;
    const auto& list = c.role == Role::smtpd ? cfg_.smtpd_milters : cfg_.non_smtpd_milters;
    if (req.index >= list.size() || list[req.index].spec != req.spec) {
        c.link->send(wire::encode(wire::Fail{451, "4.7.1", "milter list changed"}, m.reqid));
        return true;
    }
    UniqueFd fd = start_connect(list[req.index]);
    if (!fd) {
        std::string why = strerror(errno);
        LOG_DEBUG("event=milter_connect_failed milter=%s error=\"%s\"", log::safe(req.spec).c_str(), why.c_str());
        c.link->send(wire::encode(wire::Fail{451, "4.7.1", "connect: " + why}, m.reqid));
        return true;
    }
    wire::MilterSocket s{std::move(fd)};
    c.link->send(wire::encode(s, m.reqid));
    return true;
}

}  // namespace mta::master
