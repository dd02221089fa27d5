// Pickup: mail that local users leave in maildrop/ with sendmail (Postfix's pickup). Owns the maildrop
// directory, its scan timer and the files whose commit is pending; a good file becomes a body file and a
// CommitItem for the group commit, a bad one moves to maildrop/bad/. With non_smtpd_milters each message
// first goes past the milters (pickup_milter.cpp), which may change, refuse or drop it. When DKIM keys are
// configured it then goes to mta-msgauth (as smtpd's do) and the body file gets the header fields it returns.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/ipc.h"
#include "common/milter_client.h"
#include "common/wire/msgauth.h"
#include "queue-manager/group_commit.h"
#include "queue-manager/store.h"

namespace mta::queue {

class Pickup {
public:
    Pickup(event_base* base, Store& store, int body_dir_fd, std::function<uint64_t()> now,
           std::function<void(CommitItem)> submit);
    ~Pickup();
    Pickup(const Pickup&) = delete;  // its timer points at it
    Pickup& operator=(const Pickup&) = delete;
    // Makes maildrop/ (mode 1733) and maildrop/bad/ in the current directory and starts scanning.
    bool start(std::string& err);
    void configure(const Config& cfg);  // hostname, message_size_limit, dkim_keys, msgauth_*
    // Sends a msgauth_request on the queue's link to mta-msgauth, answered through msgauth_reply or
    // msgauth_lost with the same token; false when there is no link.
    using AskMsgauth = std::function<bool(ipc::Message request, uint64_t token)>;
    void set_msgauth(AskMsgauth ask) { ask_ = std::move(ask); }
    void msgauth_reply(uint64_t token, const wire::MsgauthReply& r);
    void msgauth_lost(uint64_t token, const char* why);
    // non_smtpd_milters: sockets come from mtad (milter_connect with the queue's own list). `ask` sends
    // the request; its answer goes to milter_socket or milter_socket_failed with the same token.
    using AskMilterSocket = std::function<void(uint64_t token, std::size_t index)>;
    void set_milter_socket(AskMilterSocket ask) { ask_socket_ = std::move(ask); }
    void milter_socket(uint64_t token, std::size_t index, UniqueFd fd);
    void milter_socket_failed(uint64_t token, std::size_t index, const std::string& why);
    void stop() { stopping_ = true; }
    // The file's message is committed: the file goes. Refused: it stays and is picked up again later.
    void committed(const std::string& name, const std::string& qid);
    void refused(const std::string& name) { busy_.erase(name); }

private:
    // A message on its way to the queue: the pieces of its body file and its commit. While it waits for
    // mta-msgauth's verdict (until `deadline`) its maildrop file stays in busy_.
    struct Waiting {
        CommitItem item;
        std::string received, body;
        uint64_t deadline = 0;
    };

    void scan();
    void pick_up(const std::string& name);
    void reject(const std::string& name, const std::string& why);
    void ask_msgauth(Waiting w);
    void expire(uint64_t now);
    void unavailable(Waiting w, const char* why);
    // Writes Received:, `prepend` and the body without `cuts` as the queue's body file, then commits.
    void finish(Waiting w, std::string_view prepend, const std::vector<wire::MsgauthCut>& cuts);
    void put_back(const std::string& name) { busy_.erase(name); }  // picked up again at a later scan
    // The milters (pickup_milter.cpp); then mta-msgauth or the commit.
    struct MilterJob;
    void start_milters(Waiting w);
    void after_milters(Waiting w);
    void milters_refused(MilterJob& job, const milter::Verdict& v);
    void milters_passed(MilterJob& job);
    void end_job(MilterJob& job);
    void free_ended_jobs();

    event_base* base_;
    Store& store_;
    int body_dir_fd_;
    std::function<uint64_t()> now_;
    std::function<void(CommitItem)> submit_;
    std::string hostname_;
    uint64_t size_limit_ = 0;
    UniqueFd dir_fd_;
    EventPtr scan_ev_;
    std::set<std::string> busy_;  // picked up, verdict or commit pending
    bool stopping_ = false;
    bool sign_ = false;            // dkim_keys set: ask mta-msgauth
    bool default_accept_ = false;  // msgauth_default_action = accept
    uint64_t msgauth_timeout_ = 60;
    AskMsgauth ask_;
    std::map<uint64_t, Waiting> waiting_;  // by queue id
    std::shared_ptr<const Config> cfg_;    // for the milter chains
    AskMilterSocket ask_socket_;
    std::map<uint64_t, std::unique_ptr<MilterJob>> jobs_;  // by queue id
    std::vector<std::unique_ptr<MilterJob>> ended_;       // freed at the next scan, outside their callbacks
    std::map<std::string, uint64_t> retry_at_;           // files a milter tempfailed: not before then
};

}  // namespace mta::queue
