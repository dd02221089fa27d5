// Clock: time and randomness as the queue manager sees them, injected so tests are deterministic.
//
// The queue's time is unix seconds that never jump. Every time the queue keeps (arrival, next attempt,
// last attempt, hold and suppression times, dead destinations) and every "is it due" is in queue time,
// so a step of the wall clock (settimeofday, a VM restored from a snapshot, NTP stepping at boot)
// neither freezes retries (a step back) nor ages mail at once (a step forward). QueueTime follows the
// wall clock and absorbs each step into an offset: it compares the wall clock's advance with
// CLOCK_BOOTTIME's, which steps do not move. What people read (mtaqueue, DSN dates, TLS reports, which
// count calendar days) is shown on the wall clock: queue time plus the offset.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mta::queue {

struct Clock {
    std::function<uint64_t()> now;     // queue time, unix seconds
    std::function<double()> jitter;    // uniform in [-1, 1]
    std::function<int64_t()> offset;   // the wall clock minus queue time (empty: 0)
    // What to save so that the next start in this boot sees a step made while the queue was down;
    // "" when nothing changed since it was last asked.
    std::function<std::string()> anchor;

    int64_t wall_offset() const { return offset ? offset() : 0; }
    // A queue time as the wall clock shows it now (0, "never", stays 0), and back.
    uint64_t shown(uint64_t t) const;
    uint64_t from_wall(uint64_t wall) const;
    uint64_t wall_now() const { return shown(now()); }  // for what counts calendar days (TLS reports)
};

class QueueTime {
public:
    static constexpr int64_t kStepTolerance = 2;  // seconds: NTP's slewing never moves the clocks apart this much
    static constexpr std::string_view kStateKey = "clock/anchor";  // in the store's destinations db

    QueueTime();  // reads the boot id: before the chroot, which has no /proc
    // `saved` is what anchor() gave in an earlier run. In the same boot, a step made since then is added
    // to its offset; after a reboot the offset is kept as it was. False when `saved` is not an anchor.
    bool restore(std::string_view saved);
    uint64_t now();
    int64_t offset() const { return offset_; }
    std::string anchor();
    // Steps seen since the last call (seconds, the wall clock's jump), for the log; 0 when none.
    int64_t take_step() { int64_t s = step_; step_ = 0; return s; }

private:
    void read(int64_t& wall, int64_t& boot) const;
    int64_t absorb(int64_t wall_moved, int64_t boot_moved);

    int64_t offset_ = 0, last_wall_ = 0, last_boot_ = 0, step_ = 0;
    bool dirty_ = true;
    std::string boot_id_;
};

Clock system_clock(std::shared_ptr<QueueTime> time);

}  // namespace mta::queue
