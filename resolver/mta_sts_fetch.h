// The blocking HTTPS GET of an MTA-STS policy, run on a worker thread so mta-resolver's event loop never
// waits for a web server: TLS 1.2+, certificate verified against the CA store loaded before the chroot
// with a host-name check for mta-sts.<domain>, SNI, a hard deadline, and a byte cap on the response.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/event_ptr.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace mta::resolver {

inline constexpr int kStsFetchTimeoutSeconds = 8;   // connect + TLS + request + response, all together
inline constexpr std::size_t kMaxStsFetches = 8;     // concurrent worker threads

// A verifying client context for policy fetches; null with `err` if the CA file cannot be loaded.
SSL_CTX* make_sts_https_context(const std::string& ca_file, std::string& err);

struct FetchResult {
    bool ok = false;
    std::string body;   // the policy text (HTTP layer already checked)
    std::string error;
};

// Blocking; for worker threads only.
FetchResult https_fetch_policy(SSL_CTX* ctx, const std::string& host, const std::string& ip, uint16_t port,
                               int timeout_seconds);

// Runs fetches on detached threads and hands results back on the event loop (through a pipe).
class FetchPool {
public:
    using Done = std::function<void(FetchResult)>;
    FetchPool(event_base* base, SSL_CTX* ctx);
    ~FetchPool();
    FetchPool(const FetchPool&) = delete;
    FetchPool& operator=(const FetchPool&) = delete;
    bool start(std::string& err);
    // False (and `done` never runs) when kMaxStsFetches are already running.
    bool fetch(const std::string& host, const std::string& ip, uint16_t port, Done done);

private:
    struct Shared {
        std::mutex mu;
        std::deque<std::pair<uint64_t, FetchResult>> results;
        int wake_fd = -1;  // write end of the pipe, closed by the last owner (pool or a late thread)
        ~Shared();
    };
    static void on_wake(int fd, short, void* arg);

    event_base* base_;
    SSL_CTX* ctx_;
    std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
    int read_fd_ = -1;
    EventPtr ev_;
    uint64_t next_id_ = 1;
    std::map<uint64_t, Done> running_;
};

}  // namespace mta::resolver
