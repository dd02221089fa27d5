// What every role process does at start: take its config from the master over fd 3, set up logging,
// and drop privileges (user, chroot, no_new_privs) before it touches untrusted data.
#pragma once
#include <string>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/ipc.h"
#include "common/role_name.h"

namespace mta::daemon {

inline constexpr int kMasterFd = 3;

struct Bootstrap {
    Config cfg;
    UniqueFd master;  // the control link to mtad; its HELLO has been consumed already
    bool foreground = false;
};

// Reads HELLO and CONFIG from fd 3 (blocking). Logs and exits(1) on any failure: without its
// master a role has nothing to do.
Bootstrap start(Role role, int argc, char** argv);

// The role's event loop, created after the privilege drop. Logs and exits(1) when libevent cannot.
EventBasePtr new_event_base();

// As root: setgroups, setresgid, setresuid to `user`, chroot to `chroot_dir` if non-empty,
// PR_SET_NO_NEW_PRIVS. As non-root: one warning line, nothing changes. Returns false with `err`.
bool drop_privileges(const std::string& user, const std::string& chroot_dir, std::string& err);
// The same for a role at start-up: a role that cannot drop must not serve, so it logs and exits(1).
void drop_privileges_or_exit(const std::string& user, const std::string& chroot_dir);

// Applies a `loglevel` message from the master; false when it carries no valid level (the caller
// treats that as a malformed message).
bool apply_loglevel(const ipc::Message& m);

// Ignore SIGPIPE; common to all roles.
void ignore_sigpipe();

}  // namespace mta::daemon
