// Crash points for the fault-injection suite (tests/integration/test_crash_points.py; the list is in
// mta-queue(8), CRASH POINTS). Compiled in only with MTA_FAULT, which the ASan+UBSan test build (SAN=1)
// and FAULT=1 define; in the normal build MTA_CRASH_POINT is nothing at all.
//
// MTA_CRASH_POINT=name in the environment (mtad passes its environment to every role) makes the first
// process that reaches that point log `event=crash_point point=name` and die by SIGKILL, as a power
// cut or the OOM killer would end it; MTA_CRASH_SKIP=N lets N passes go first. mtad, seeing a child
// killed so, takes the variable out of its own environment, so the restarted process (the recovery under
// test) runs through. Processes of the same role started before the kill still have it: the suite runs
// one process per role.
#pragma once

#ifdef MTA_FAULT
namespace mta::fault {
void point(const char* name);
// mtad: a child died by SIGKILL; crash points end here (the processes it starts from now on have none).
void disarm();
}  // namespace mta::fault
#define MTA_CRASH_POINT(name) ::mta::fault::point(name)
#else
#define MTA_CRASH_POINT(name) \
    do {                      \
    } while (0)
#endif
