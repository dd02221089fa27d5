// Connection cache: sessions that finished a transaction wait here, idle, for the next message to the
// same destination (skipping DNS, connect, greeting and EHLO). Idle ones expire with QUIT.
#pragma once
#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "smtp-client/smtp_session.h"

namespace mta::smtp {

inline constexpr int kCacheIdleSeconds = 5;          // how long an idle connection waits for reuse
inline constexpr std::size_t kCachePerDestination = 20;
inline constexpr std::size_t kCacheTotal = 500;

class ConnCache {
public:
    // Park `s` under `key`; when full it is closed with QUIT instead.
    void put(const std::string& key, std::unique_ptr<Session> s);
    // The most recently parked idle session for `key`, or nullptr.
    std::unique_ptr<Session> take(const std::string& key);
    // QUIT every idle session (on stop).
    void close_all();
    // Close `s` with QUIT instead of keeping it (it carried as many transactions as it may).
    void retire(std::unique_ptr<Session> s);
    std::size_t size() const { return total_; }

private:
    using List = std::list<std::unique_ptr<Session>>;
    void remove(const std::string& key, Session* s);

    std::map<std::string, List> idle_;
    List closing_;  // sessions saying QUIT
    std::size_t total_ = 0;
};

}  // namespace mta::smtp
