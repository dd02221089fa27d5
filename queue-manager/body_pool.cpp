// BodyPool worker: openat(O_CREAT|O_EXCL) ahead of demand and unlinkat behind it, on its own thread.
// Touches nothing but the body directory; all queue state stays on the event-loop thread.
#include "queue-manager/body_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include "queue-manager/qid.h"

namespace mta::queue {

BodyPool::BodyPool(int dir_fd) : dir_fd_(dir_fd), thread_([this] { run(); }) {}

BodyPool::~BodyPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void BodyPool::create(std::vector<uint64_t> ids) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        to_create_.insert(to_create_.end(), ids.begin(), ids.end());
    }
    cv_.notify_one();
}

std::optional<std::pair<uint64_t, UniqueFd>> BodyPool::take() {
    std::lock_guard<std::mutex> lk(mu_);
    if (ready_.empty()) return std::nullopt;
    auto out = std::move(ready_.front());
    ready_.pop_front();
    return out;
}

std::size_t BodyPool::stocked() {
    std::lock_guard<std::mutex> lk(mu_);
    return ready_.size() + to_create_.size();
}

void BodyPool::remove(uint64_t id) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        to_remove_.push_back(id);
    }
    cv_.notify_one();
}

void BodyPool::shutdown() {
    std::unique_lock<std::mutex> lk(mu_);
    to_create_.clear();
    for (auto& [id, fd] : ready_) to_remove_.push_back(id);
    ready_.clear();
    std::deque<uint64_t> rm;
    rm.swap(to_remove_);
    lk.unlock();
    for (uint64_t id : rm) unlinkat(dir_fd_, format_qid(id).c_str(), 0);
}

void BodyPool::run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_.wait(lk, [this] { return stop_ || !to_create_.empty() || !to_remove_.empty(); });
        if (stop_) return;
        if (!to_remove_.empty()) {
            uint64_t id = to_remove_.front();
            to_remove_.pop_front();
            lk.unlock();
            unlinkat(dir_fd_, format_qid(id).c_str(), 0);
            lk.lock();
            continue;
        }
        uint64_t id = to_create_.front();
        lk.unlock();
        // A failure here just leaves the pool short: body_open then creates the file itself and reports.
        UniqueFd fd(openat(dir_fd_, format_qid(id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        lk.lock();
        if (!to_create_.empty() && to_create_.front() == id) to_create_.pop_front();
        if (fd) ready_.emplace_back(id, std::move(fd));
    }
}

}  // namespace mta::queue
