// IPC codec and the event-driven Link. Trusts nothing it receives: sizes, counts and fds are checked.
#include "common/ipc.h"

#include <cerrno>
#include <cstring>
#include <event2/event.h>
#include <sys/socket.h>
#include <memory>
#include <sys/select.h>

#include "common/log.h"
#include "common/wire/control.h"

namespace mta::ipc {
namespace {

void put16(std::string& s, uint16_t v) { s.push_back(char(v & 0xff)); s.push_back(char(v >> 8)); }
void put32(std::string& s, uint32_t v) { for (int i = 0; i < 4; i++) s.push_back(char((v >> (8 * i)) & 0xff)); }
void put64(std::string& s, uint64_t v) { for (int i = 0; i < 8; i++) s.push_back(char((v >> (8 * i)) & 0xff)); }
uint64_t getn(const unsigned char* p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

bool known_type(uint16_t t) {
    switch (Type(t)) {
    case Type::hello: case Type::config: case Type::peer: case Type::listen: case Type::stop:
    case Type::loglevel: case Type::resolve_request: case Type::resolve_reply:
    case Type::admin_request: case Type::admin_reply: case Type::admin_more: case Type::stats_request: case Type::stats_reply:
    case Type::body_open: case Type::body_open_ok: case Type::fail: case Type::commit:
    case Type::commit_ok: case Type::abort: case Type::spool_probe: case Type::deliver: case Type::deliver_result:
    case Type::anvil_connect: case Type::anvil_verdict: case Type::anvil_disconnect:
    case Type::anvil_auth_fail: case Type::anvil_auth_count: case Type::milter_connect: case Type::milter_socket:
    case Type::msgauth_request: case Type::msgauth_reply:
        return true;
    }
    return false;
}

}  // namespace

Message& Message::add_u64(Tag t, uint64_t v) {
    std::string s;
    put64(s, v);
    fields.push_back({t, std::move(s)});
    return *this;
}

const std::string* Message::get(Tag t) const {
    for (auto& f : fields)
        if (f.tag == t) return &f.value;
    return nullptr;
}

std::optional<uint64_t> as_u64(const std::string& v) {
    if (v.size() != 8) return std::nullopt;
    return getn(reinterpret_cast<const unsigned char*>(v.data()), 8);
}

std::optional<uint64_t> Message::get_u64(Tag t) const {
    auto p = get(t);
    if (!p) return std::nullopt;
    return as_u64(*p);
}

const char* type_name(Type t) {
    switch (t) {
    case Type::hello: return "hello";
    case Type::config: return "config";
    case Type::peer: return "peer";
    case Type::listen: return "listen";
    case Type::stop: return "stop";
    case Type::loglevel: return "loglevel";
    case Type::resolve_request: return "resolve_request";
    case Type::resolve_reply: return "resolve_reply";
    case Type::admin_request: return "admin_request";
    case Type::admin_reply: return "admin_reply";
    case Type::admin_more: return "admin_more";
    case Type::stats_request: return "stats_request";
    case Type::stats_reply: return "stats_reply";
    case Type::body_open: return "body_open";
    case Type::body_open_ok: return "body_open_ok";
    case Type::fail: return "fail";
    case Type::commit: return "commit";
    case Type::commit_ok: return "commit_ok";
    case Type::abort: return "abort";
    case Type::spool_probe: return "spool_probe";
    case Type::msgauth_request: return "msgauth_request";
    case Type::msgauth_reply: return "msgauth_reply";
    case Type::deliver: return "deliver";
    case Type::deliver_result: return "deliver_result";
    case Type::anvil_connect: return "anvil_connect";
    case Type::anvil_verdict: return "anvil_verdict";
    case Type::anvil_disconnect: return "anvil_disconnect";
    case Type::anvil_auth_fail: return "anvil_auth_fail";
    case Type::anvil_auth_count: return "anvil_auth_count";
    case Type::milter_connect: return "milter_connect";
    case Type::milter_socket: return "milter_socket";
    }
    return "unknown";
}

std::string encode(const Message& m) {
    std::string payload;
    for (auto& f : m.fields) {
        put16(payload, uint16_t(f.tag));
        put32(payload, uint32_t(f.value.size()));
        payload += f.value;
    }
    std::string out;
    out.reserve(kHeaderSize + payload.size());
    put16(out, kProtocolVersion);
    put16(out, uint16_t(m.type));
    put32(out, uint32_t(payload.size()));
    put64(out, m.reqid);
    out += payload;
    return out;
}

bool decode(std::string_view bytes, Message& out, std::string& err) {
    auto p = reinterpret_cast<const unsigned char*>(bytes.data());
    if (bytes.size() < kHeaderSize) { err = "short header"; return false; }
    if (bytes.size() > kMaxMessage) { err = "message too large"; return false; }
    if (getn(p, 2) != kProtocolVersion) { err = "protocol version mismatch"; return false; }
    uint16_t type = uint16_t(getn(p + 2, 2));
    if (!known_type(type)) { err = "unknown message type"; return false; }
    uint64_t len = getn(p + 4, 4);
    if (len != bytes.size() - kHeaderSize) { err = "length mismatch"; return false; }
    out.type = Type(type);
    out.reqid = getn(p + 8, 8);
    out.fields.clear();
    std::size_t off = kHeaderSize;
    while (off < bytes.size()) {
        if (bytes.size() - off < 6) { err = "truncated field header"; return false; }
        uint16_t tag = uint16_t(getn(p + off, 2));
        uint64_t flen = getn(p + off + 2, 4);
        off += 6;
        if (flen > bytes.size() - off) { err = "truncated field"; return false; }
        out.fields.push_back({Tag(tag), std::string(bytes.substr(off, flen))});
        off += flen;
    }
    return true;
}

RecvResult recv_message(int fd, Message& out, std::string& err) {
    // One byte more than the cap lets us detect (and refuse) an over-sized datagram.
    static thread_local std::string buf(kMaxMessage + 1, '\0');
    alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
    struct iovec iov = {buf.data(), buf.size()};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n;
    do n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return RecvResult::again;
        if (errno == ECONNRESET) return RecvResult::eof;
        err = strerror(errno);
        return RecvResult::eof;
    }
    out.fds.clear();
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < nfd; i++) {
                int f;
                memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                out.fds.emplace_back(f);
            }
        }
    }
    if (n == 0) return RecvResult::eof;
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) { err = "truncated datagram or fds"; return RecvResult::malformed; }
    if (!decode(std::string_view(buf.data(), std::size_t(n)), out, err)) return RecvResult::malformed;
    return RecvResult::ok;
}

RecvResult recv_blocking(int fd, Message& out, std::string& err) {
    for (;;) {
        RecvResult r = recv_message(fd, out, err);
        if (r != RecvResult::again) return r;
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(fd, &rs);
        if (select(fd + 1, &rs, nullptr, nullptr, nullptr) < 0 && errno != EINTR) {
            err = strerror(errno);
            return RecvResult::eof;
        }
    }
}

int send_message(int fd, const Message& m) {
    std::string bytes = encode(m);
    if (bytes.size() > kMaxMessage || m.fds.size() > kMaxFds) return EMSGSIZE;
    struct iovec iov = {bytes.data(), bytes.size()};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
    if (!m.fds.empty()) {
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * m.fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * m.fds.size());
        for (std::size_t i = 0; i < m.fds.size(); i++) {
            int f = m.fds[i].get();
            memcpy(CMSG_DATA(c) + i * sizeof(int), &f, sizeof f);
        }
    }
    ssize_t n;
    do n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EWOULDBLOCK ? EAGAIN : errno;
    return 0;
}

Link::Link(event_base* base, UniqueFd fd, Role self, std::string peer_desc, Handler on_msg,
           CloseHandler on_close, bool peer_hello_seen)
    : fd_(std::move(fd)), desc_(std::move(peer_desc)), got_hello_(peer_hello_seen), on_msg_(std::move(on_msg)),
      on_close_(std::move(on_close)) {
    rev_.reset(event_new(base, fd_.get(), EV_READ | EV_PERSIST, &Link::on_read, this));
    wev_.reset(event_new(base, fd_.get(), EV_WRITE, &Link::on_write, this));
    event_add(rev_.get(), nullptr);
    send(wire::encode(wire::Hello{kProtocolVersion, role_name(self)}));
}

Link::~Link() { *alive_ = false; }

void Link::send(Message m) {
    if (!fd_.valid()) return;
    out_.push_back(std::move(m));
    if (out_.size() == 1) flush();
}

void Link::flush() {
    while (!out_.empty() && fd_.valid()) {
        int e = send_message(fd_.get(), out_.front());
        if (e == EAGAIN) {
            event_add(wev_.get(), nullptr);
            return;
        }
        if (e != 0) {
            fail(false, std::string("send: ") + strerror(e));
            return;
        }
        out_.pop_front();
    }
}

void Link::drain() {
    while (!out_.empty() && fd_.valid()) {
        int e = send_message(fd_.get(), out_.front());
        if (e == EAGAIN) {
            fd_set ws;
            FD_ZERO(&ws);
            FD_SET(fd_.get(), &ws);
            struct timeval tv = {1, 0};
            if (select(fd_.get() + 1, nullptr, &ws, nullptr, &tv) <= 0) return;
            continue;
        }
        if (e != 0) return;
        out_.pop_front();
    }
}

void Link::on_write(int, short, void* arg) { static_cast<Link*>(arg)->flush(); }
void Link::on_read(int, short, void* arg) { static_cast<Link*>(arg)->handle_read(); }

void Link::handle_read() {
    std::shared_ptr<bool> alive = alive_;
    // Bounded batch per wakeup so one busy peer cannot starve the loop.
    for (int i = 0; i < 64 && *alive && fd_.valid(); i++) {
        Message m;
        std::string err;
        RecvResult r = recv_message(fd_.get(), m, err);
        if (r == RecvResult::again) return;
        if (r == RecvResult::eof) { fail(false, err.empty() ? "closed" : err); return; }
        if (r == RecvResult::malformed) { fail(true, err); return; }
        if (!got_hello_) {
            wire::Hello hello;
            if (!wire::decode(m, hello, err)) {
                fail(true, "bad hello: " + err);
                return;
            }
            got_hello_ = true;
            peer_role_ = hello.role;
            if (on_hello_) on_hello_(peer_role_);
            continue;
        }
        if (m.type == Type::hello) { fail(true, "duplicate hello"); return; }
        on_msg_(m);
    }
}

void Link::fail(bool malformed, const std::string& why) {
    if (!fd_.valid()) return;
    event_del(rev_.get());
    event_del(wev_.get());
    fd_.reset();
    out_.clear();
    if (malformed) LOG_ERROR("event=ipc_malformed peer=%s reason=\"%s\"", desc_.c_str(), log::safe(why).c_str());
    if (on_close_) on_close_(malformed, why);  // may destroy *this
}

}  // namespace mta::ipc
