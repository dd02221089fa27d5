// The real clock: QueueTime over clock_gettime(2) and a seeded uniform generator for retry jitter.
#include "queue-manager/clock.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <random>

#include "common/log.h"

namespace mta::queue {
namespace {

std::string read_boot_id() {
    std::ifstream f("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(f, id);
    return id;
}

}  // namespace

uint64_t Clock::shown(uint64_t t) const {
    if (t == 0) return 0;
    int64_t w = int64_t(t) + wall_offset();
    return w < 1 ? 1 : uint64_t(w);
}

uint64_t Clock::from_wall(uint64_t wall) const {
    int64_t q = int64_t(wall) - wall_offset();
    return q < 1 ? 1 : uint64_t(q);
}

void QueueTime::read(int64_t& wall, int64_t& boot) const {
    struct timespec w, b;
    clock_gettime(CLOCK_REALTIME, &w);
    clock_gettime(CLOCK_BOOTTIME, &b);
    wall = int64_t(w.tv_sec);
    boot = int64_t(b.tv_sec);
}

QueueTime::QueueTime() : boot_id_(read_boot_id()) { read(last_wall_, last_boot_); }

bool QueueTime::restore(std::string_view saved) {
    char id[64] = "";
    long long wall = 0, boot = 0, offset = 0;
    std::string s(saved);
    if (sscanf(s.c_str(), "v1 %63s %lld %lld %lld", id, &wall, &boot, &offset) != 4) return false;
    read(last_wall_, last_boot_);
    offset_ = offset;
    dirty_ = true;
    if (boot_id_.empty() || boot_id_ != id) return true;  // another boot: no common reference
    absorb(last_wall_ - wall, last_boot_ - boot);
    return true;
}

// The wall clock moved by more (or less) than the boot clock, beyond the tolerance: a step, which goes
// into the offset. Returns it, or 0.
int64_t QueueTime::absorb(int64_t wall_moved, int64_t boot_moved) {
    int64_t step = wall_moved - boot_moved;
    if (step <= kStepTolerance && step >= -kStepTolerance) return 0;
    offset_ += step;
    step_ += step;
    dirty_ = true;
    return step;
}

uint64_t QueueTime::now() {
    int64_t wall, boot;
    read(wall, boot);
    if (int64_t step = absorb(wall - last_wall_, boot - last_boot_)) {
        LOG_WARN("event=clock_step seconds=%lld offset=%lld reason=\"the wall clock jumped; the queue's time did not\"",
                 (long long)step, (long long)offset_);
    }
    last_wall_ = wall;
    last_boot_ = boot;
    int64_t q = wall - offset_;
    return q < 1 ? 1 : uint64_t(q);
}

std::string QueueTime::anchor() {
    if (!dirty_) return "";
    dirty_ = false;
    // The pair of readings the offset belongs to: a later start in this boot compares with it.
    return "v1 " + (boot_id_.empty() ? std::string("-") : boot_id_) + " " + std::to_string(last_wall_) + " " +
           std::to_string(last_boot_) + " " + std::to_string(offset_);
}

Clock system_clock(std::shared_ptr<QueueTime> time) {
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    return Clock{[time] { return time->now(); },
                 [rng] { return std::uniform_real_distribution<double>(-1.0, 1.0)(*rng); },
                 [time] { return time->offset(); },
                 [time] { return time->anchor(); }};
}

}  // namespace mta::queue
