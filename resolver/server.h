// The mta-resolver event loop side: IPC links (master + peers), resolve_request handling with a
// per-request timeout, and the libunbound worker pipe. Trusts no peer: every request is validated and
// a malformed one ends the process (exit 2) so the master restarts it.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/ipc.h"
#include "common/role.h"
#include "resolver/answer.h"
#include "resolver/dns_context.h"
#include "resolver/mta_sts.h"

namespace mta::resolver {

inline constexpr int kRequestTimeoutSeconds = 10;
inline constexpr int kStopGraceSeconds = 2;

class Server final : public daemon::MasterHandler {
public:
    Server(event_base* base, UbCtxPtr ctx, Config cfg);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // After the privilege drop: fork libunbound's worker and watch its result pipe.
    bool start(std::string& err);
    void attach_master(UniqueFd fd);
    // Before start(): serve MTA-STS lookups (pseudo qtype sts::kQtypeMtaSts). `https` verifies policy
    // servers (null: every fetch fails, cached policies still apply); `cache_dir` holds one file per domain.
    void enable_mta_sts(SSL_CTX* https, std::string cache_dir);

private:
    struct Pending {
        Server* self = nullptr;
        uint64_t id = 0;        // our key in pending_
        uint64_t link_id = 0;   // where the reply goes (dropped if that link is gone)
        uint64_t reqid = 0;
        std::string name;
        uint16_t qtype = 0;
        int async_id = 0;
        EventPtr timer;
        StsService::AnswerCb done;  // internal lookup (MTA-STS): called instead of replying on a link
        std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    };

    static void on_ub_readable(int, short, void*);
    static void on_ub_result(void* arg, int err, ub_result* result);
    static void on_timeout(int, short, void*);
    static void on_stop_grace(int, short, void*);

    uint64_t add_link(UniqueFd fd, const std::string& desc, bool hello_seen);
    void on_link_close(uint64_t link_id, bool malformed, const std::string& why);
    void retire_link(uint64_t link_id);
    [[noreturn]] void malformed(uint64_t link_id, const std::string& why);

    // daemon::MasterHandler
    void on_peer(Role role, uint64_t instance, UniqueFd fd) override;
    void on_reload(Config next, const wire::Config& conf) override;
    void on_stop() override;
    void on_request(ipc::Message& m) override;  // resolve_request relayed from mtactl/mtadns
    [[noreturn]] void on_master_closed() override;

    void handle_peer(uint64_t link_id, ipc::Message& m);
    void handle_resolve(uint64_t link_id, ipc::Message& m);
    // Starts one libunbound query; `done` set = internal, else the answer goes to link_id/reqid.
    void start_query(uint64_t link_id, uint64_t reqid, const std::string& name, uint16_t qtype,
                     StsService::AnswerCb done);
    void finish(uint64_t pending_id, const Answer& a);
    static void count_query(uint16_t qtype, const Answer& a, std::chrono::steady_clock::duration took);
    void send_reply(uint64_t link_id, uint64_t reqid, const Answer& a);
    void maybe_exit_after_stop();
    [[noreturn]] void clean_exit();

    event_base* base_;
    UbCtxPtr ctx_;
    Config cfg_;
    EventPtr ub_event_;
    EventPtr stop_timer_;
    daemon::Reaper reaper_;  // frees closed links from the loop, never inside their own callback
    std::unique_ptr<daemon::MasterLink> master_;
    std::map<uint64_t, std::unique_ptr<ipc::Link>> links_;  // peers; the master link has its own id
    std::map<std::string, uint64_t> peers_;  // "role/instance" -> link id
    std::map<uint64_t, std::unique_ptr<Pending>> pending_;
    std::unique_ptr<StsService> sts_;
    SSL_CTX* sts_https_ = nullptr;
    std::string sts_cache_dir_;
    uint64_t master_id_ = 0;
    uint64_t next_link_id_ = 1;
    uint64_t next_pending_id_ = 1;
    bool stopping_ = false;
};

}  // namespace mta::resolver
