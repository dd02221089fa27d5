// A role's link to a peer role it asks things of (mta-smtpd to mta-queue and mta-msgauth, mta-queue to
// mta-msgauth) and the requests waiting on it: replies are matched to their requesters by request id; a
// link that closes or is replaced fails every request still waiting, so nobody waits for an answer that
// cannot come. A malformed message from the peer ends the process (daemon::malformed).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "common/fd.h"
#include "common/ipc.h"
#include "common/role.h"

namespace mta {

class PeerLink {
public:
    using OnMessage = std::function<void(ipc::Message&)>;
    using OnLost = std::function<void(uint64_t requester, const char* why)>;  // its request gets no answer

    PeerLink(event_base* base, daemon::Reaper& reaper, Role self, Role peer, OnMessage on_message, OnLost on_lost);

    // A new link from the master (the peer started, or started again): the old one's requests fail.
    void attach(UniqueFd fd);
    // Sends a requester's request under `reqid`; false when there is no open link.
    bool request(ipc::Message m, uint64_t requester, uint64_t reqid);
    // Fire and forget; lost silently without a link.
    void notify(ipc::Message m);
    // The requester that waits for `reqid`, no longer waiting; nothing for an unknown reqid.
    std::optional<uint64_t> take(uint64_t reqid);
    void drain();

private:
    void fail_all(const char* why);

    event_base* base_;
    daemon::Reaper& reaper_;
    Role self_, peer_;
    OnMessage on_message_;
    OnLost on_lost_;
    std::unique_ptr<ipc::Link> link_;
    uint64_t generation_ = 0;
    std::map<uint64_t, uint64_t> pending_;  // reqid -> requester
};

}  // namespace mta
