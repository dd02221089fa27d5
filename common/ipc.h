// IPC framing over AF_UNIX SOCK_SEQPACKET: one datagram = one message, fds by SCM_RIGHTS.
// Wire: 16-byte little-endian header {u16 version, u16 type, u32 payload_len, u64 request_id},
// then fields {u16 tag, u32 len, bytes}. Decoding is strict: any inconsistency is "malformed".
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/protocol.h"
#include "common/role_name.h"

namespace mta::ipc {

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::size_t kMaxMessage = 256 * 1024;
inline constexpr std::size_t kMaxFds = 4;

struct Field {
    Tag tag;
    std::string value;
};

struct Message {
    Type type = Type::hello;
    uint64_t reqid = 0;
    std::vector<Field> fields;
    std::vector<UniqueFd> fds;

    Message() = default;
    explicit Message(Type t, uint64_t id = 0) : type(t), reqid(id) {}

    Message& add(Tag t, std::string_view v) { fields.push_back({t, std::string(v)}); return *this; }
    Message& add_u64(Tag t, uint64_t v);
    Message& add_fd(UniqueFd fd) { fds.push_back(std::move(fd)); return *this; }

    const std::string* get(Tag t) const;            // first occurrence
    std::optional<uint64_t> get_u64(Tag t) const;   // first occurrence, must be exactly 8 bytes
    std::string str(Tag t) const { auto p = get(t); return p ? *p : std::string(); }
};

std::optional<uint64_t> as_u64(const std::string& v);
const char* type_name(Type t);

// Pure codec, exposed for unit tests and the fuzzer.
std::string encode(const Message& m);
bool decode(std::string_view bytes, Message& out, std::string& err);

enum class RecvResult { ok, again, eof, malformed };
// Non-blocking receive of one datagram (with fds, close-on-exec).
RecvResult recv_message(int fd, Message& out, std::string& err);
// Returns 0 on success, EAGAIN if it would block, other errno on failure.
int send_message(int fd, const Message& m);
// Blocking receive used during child bootstrap before the event loop exists.
RecvResult recv_blocking(int fd, Message& out, std::string& err);

// An event-driven link to one peer: validates the HELLO, queues outgoing messages when the socket is
// full, and reports close (EOF, error or malformed input) exactly once.
class Link {
public:
    using Handler = std::function<void(Message&)>;
    using CloseHandler = std::function<void(bool malformed, const std::string& why)>;

    Link(event_base* base, UniqueFd fd, Role self, std::string peer_desc, Handler on_msg,
         CloseHandler on_close, bool peer_hello_seen = false);
    ~Link();
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;

    // Called once, when the peer's HELLO has been validated (with the role it claims).
    void set_hello_handler(std::function<void(const std::string& role)> h) { on_hello_ = std::move(h); }

    void send(Message m);
    // Sends everything queued now, blocking; used before exit so a final reply is not lost.
    void drain();
    bool open() const { return fd_.valid(); }
    const std::string& peer_role() const { return peer_role_; }  // from the peer's HELLO
    const std::string& desc() const { return desc_; }
    std::size_t backlog() const { return out_.size(); }
    int fd() const { return fd_.get(); }

private:
    static void on_read(int, short, void*);
    static void on_write(int, short, void*);
    void handle_read();
    void flush();
    void fail(bool malformed, const std::string& why);

    UniqueFd fd_;
    std::string desc_;
    std::string peer_role_;
    bool got_hello_ = false;
    Handler on_msg_;
    CloseHandler on_close_;
    std::function<void(const std::string&)> on_hello_;
    EventPtr rev_;
    EventPtr wev_;
    std::deque<Message> out_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mta::ipc
