// The local delivery agent proper: maps each recipient of a deliver request to a Maildir under
// mail_dir and writes one copy per mailbox. Trusts only requests that parse_deliver() accepted.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "smtp-client/local/local_request.h"

namespace mta::local {

struct Clock {
    uint64_t secs = 0;
    uint64_t usecs = 0;
};

class Agent {
public:
    using Now = std::function<Clock()>;

    // `root_fd`: an open directory fd of mail_dir (not owned). `now` and `pid` feed unique names.
    Agent(int root_fd, std::string hostname, uint64_t pid, Now now);
    void set_hostname(const std::string& hostname);

    // Blocking: writes every mailbox, then returns one result per recipient in request order.
    std::vector<RcptResult> deliver(const DeliverRequest& req);

private:
    Outcome deliver_to(const DeliverRequest& req, const std::string& mailbox, const std::string& rcpt);
    std::string next_unique();

    int root_fd_;
    std::string host_;  // escaped for file names
    uint64_t pid_;
    Now now_;
    uint64_t counter_ = 0;
};

}  // namespace mta::local
