// BodyPool: a helper thread that creates body files ahead of time and removes finished ones, so file
// creation and unlink (slow ext4 metadata operations that stall behind journal commits) stay off the
// event loop. Unused pre-created files have no queue record and are removed by startup recovery.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "common/fd.h"

namespace mta::queue {

class BodyPool {
public:
    explicit BodyPool(int dir_fd);  // dir_fd stays owned by the caller and must outlive the pool
    ~BodyPool();
    BodyPool(const BodyPool&) = delete;
    BodyPool& operator=(const BodyPool&) = delete;

    // Create these (fresh, never used) ids in the background.
    void create(std::vector<uint64_t> ids);
    // A ready body file (O_WRONLY, 0600), if one is.
    std::optional<std::pair<uint64_t, UniqueFd>> take();
    std::size_t stocked();  // ready + still being created
    // Unlink in the background (the store no longer refers to it, or it was never committed).
    void remove(uint64_t id);
    // Before exit: unlink what was created but never handed out, and finish pending removals.
    void shutdown();

private:
    void run();

    int dir_fd_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<uint64_t> to_create_, to_remove_;
    std::deque<std::pair<uint64_t, UniqueFd>> ready_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace mta::queue
