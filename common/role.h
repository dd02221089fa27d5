// The skeleton every role process shares: the link to mtad (config reload, log level, stop, peer and
// listen messages handed to the role's own callbacks), the one way a role dies on a malformed
// message, and the deferred destruction of links and sessions that closed inside their own callbacks.
// A role implements MasterHandler and keeps only its own job.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/ipc.h"
#include "common/role_name.h"
#include "common/wire/control.h"

namespace mta::daemon {

// A peer (or the master) broke the protocol: one log line, exit 2. No process trusts a less
// privileged one; the master restarts us and our peers retry.
[[noreturn]] void malformed(std::string_view peer, const std::string& why);
[[noreturn]] void malformed(Role peer, const std::string& why);

// What the master asks of a role. Every message has been validated before the callback runs.
class MasterHandler {
public:
    // A socketpair end to one instance of another role. A role that does not talk to `role` calls
    // malformed() or ignores it, as its protocol says.
    virtual void on_peer(Role role, uint64_t instance, UniqueFd fd) = 0;
    // A new configuration that parsed; the log level is already applied. `conf` is the decoded
    // message, with its extras (smtpd's PEM text). Keys that need a restart are the role's to warn about.
    virtual void on_reload(Config next, const wire::Config& conf) = 0;
    // Finish current work, then exit.
    virtual void on_stop() = 0;
    // A listening socket (smtpd only); the default treats it as malformed.
    virtual void on_listen(const std::string& kind, UniqueFd fd);
    // Any other message type (anvil verdicts, admin or resolve requests); the default treats it as malformed.
    virtual void on_request(ipc::Message& m);
    // The master went away (it is logged already): exit now, releasing what must be released. Default: exit(0).
    [[noreturn]] virtual void on_master_closed();

protected:
    ~MasterHandler() = default;
};

// The role's end of fd 3, after bootstrap consumed the master's HELLO and CONFIG.
class MasterLink {
public:
    MasterLink(event_base* base, Role self, UniqueFd fd, MasterHandler& handler);
    MasterLink(const MasterLink&) = delete;
    MasterLink& operator=(const MasterLink&) = delete;

    void send(ipc::Message m) { link_->send(std::move(m)); }
    void drain() { link_->drain(); }
    bool open() const { return link_->open(); }

private:
    void dispatch(ipc::Message& m);
    void reload(const ipc::Message& m);
    void peer(ipc::Message& m);

    MasterHandler& handler_;
    std::unique_ptr<ipc::Link> link_;
};

// Links and sessions close inside their own callbacks, where they cannot be destroyed. They are
// buried here and freed from the loop once the callback chain has unwound; then `after_round`
// runs (a role checks there whether a pending stop may finish).
class Reaper {
public:
    explicit Reaper(event_base* base, std::function<void()> after_round = {});
    Reaper(const Reaper&) = delete;
    Reaper& operator=(const Reaper&) = delete;

    template <class T>
    void bury(std::unique_ptr<T> p) {
        if (!p) return;
        dead_.push_back(std::shared_ptr<void>(std::move(p)));
        poke();
    }
    // Runs `fn` from the loop in the next round, before after_round.
    void later(std::function<void()> fn);
    // Schedules a round even with nothing to free (so after_round runs).
    void poke();

private:
    static void on_round(int, short, void* arg);

    EventPtr ev_;
    std::function<void()> after_round_;
    std::vector<std::shared_ptr<void>> dead_;
    std::vector<std::function<void()>> tasks_;
};

}  // namespace mta::daemon
