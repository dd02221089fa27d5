// Crash points (common/fault.h): test builds only.
#include "common/fault.h"

#ifdef MTA_FAULT
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace mta::fault {

void point(const char* name) {
    static long passes = 0;
    const char* want = getenv("MTA_CRASH_POINT");
    if (!want || strcmp(want, name) != 0) return;
    const char* skip = getenv("MTA_CRASH_SKIP");
    if (skip && passes++ < atol(skip)) return;
    LOG_WARN("event=crash_point point=%s pid=%d", name, int(getpid()));
    raise(SIGKILL);
}

void disarm() {
    if (getenv("MTA_CRASH_POINT")) LOG_INFO("event=crash_points_disarmed");
    unsetenv("MTA_CRASH_POINT");
}

}  // namespace mta::fault
#endif
