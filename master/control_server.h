// The control socket's connections, served from mtad's event loop without ever blocking it: each
// client has its own buffers and a deadline, reads and writes are non-blocking, and the number of
// clients is capped. What a complete request line means is the Master's business (master_control.cpp).
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/event_ptr.h"
#include "common/fd.h"

struct event_base;
struct event;

namespace mta::master {

struct ControlLimits {
    std::size_t max_request = 512;      // the command line with its newline
    unsigned request_seconds = 5;       // from connect to the complete command line
    unsigned reply_seconds = 30;        // the longest a reply may stall (role silent or client not reading)
    std::size_t max_clients = 64;       // connections served at once
    std::size_t max_unprivileged = 48;  // of those, held by users other than root and mtad's own uid
};

// Who sent a request, from SO_PEERCRED.
struct ControlPeer {
    uint64_t id = 0;  // this connection, for ControlServer::reply()
    uid_t uid = 0;
    bool privileged = false;
};

class ControlServer {
public:
    // Called once per connection with its command line (newline removed). The handler answers with
    // reply(), now or later; until the last chunk is queued the connection waits (reply deadline).
    using Handler = std::function<void(const ControlPeer&, const std::string& line)>;
    // Called when a connection goes away before its last reply chunk was queued.
    using Gone = std::function<void(uint64_t id)>;
    // Called when everything queued for a connection that waits for more of its answer has been written:
    // the moment to ask a role for the next chunk of a streamed answer.
    using Drained = std::function<void(uint64_t id)>;

    ControlServer(event_base* base, UniqueFd listen_fd, ControlLimits limits, Handler handler, Gone gone,
                  Drained drained = {});
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Queues a chunk of the answer for connection `id`; `last` closes it once everything is written.
    // False when the connection is gone (dropped, or the client went away).
    bool reply(uint64_t id, std::string_view text, bool last);
    std::size_t clients() const { return clients_.size(); }

private:
    struct Client;

    static void on_accept(int, short, void* arg);
    static void on_resume(int, short, void* arg);
    static void on_client_read(int, short, void* arg);
    static void on_client_write(int, short, void* arg);
    static void on_client_timer(int, short, void* arg);

    void accept_clients();
    void read_request(Client& c);
    bool flush(Client& c);
    void arm_deadline(Client& c, unsigned seconds);
    void drop(Client& c, const char* reason);
    void close(uint64_t id);

    event_base* base_;
    UniqueFd listen_fd_;
    ControlLimits limits_;
    Handler handler_;
    Gone gone_;
    Drained drained_;
    EventPtr accept_ev_, resume_ev_;
    std::map<uint64_t, std::unique_ptr<Client>> clients_;
    std::size_t unprivileged_ = 0;
    uint64_t next_id_ = 0;
};

}  // namespace mta::master
