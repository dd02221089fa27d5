// Pickup: mail that local users leave in maildrop/ with sendmail (Postfix's pickup). Owns the maildrop
// directory, its scan timer and the files whose commit is pending; a good file becomes a body file and a
// CommitItem for the group commit, a bad one moves to maildrop/bad/.
#pragma once
#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "queue-manager/group_commit.h"
#include "queue-manager/store.h"

namespace mta::queue {

class Pickup {
public:
    Pickup(event_base* base, Store& store, int body_dir_fd, std::function<uint64_t()> now,
           std::function<void(CommitItem)> submit);
    Pickup(const Pickup&) = delete;  // its timer points at it
    Pickup& operator=(const Pickup&) = delete;
    // Makes maildrop/ (mode 1733) and maildrop/bad/ in the current directory and starts scanning.
    bool start(std::string& err);
    void configure(const Config& cfg);  // hostname, message_size_limit
    void stop() { stopping_ = true; }
    // The file's message is committed: the file goes. Refused: it stays and is picked up again later.
    void committed(const std::string& name, const std::string& qid);
    void refused(const std::string& name) { busy_.erase(name); }

private:
    void scan();
    void pick_up(const std::string& name);
    void reject(const std::string& name, const std::string& why);

    event_base* base_;
    Store& store_;
    int body_dir_fd_;
    std::function<uint64_t()> now_;
    std::function<void(CommitItem)> submit_;
    std::string hostname_;
    uint64_t size_limit_ = 0;
    UniqueFd dir_fd_;
    EventPtr scan_ev_;
    std::set<std::string> busy_;  // picked up, commit pending
    bool stopping_ = false;
};

}  // namespace mta::queue
