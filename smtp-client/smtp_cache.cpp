// ConnCache: owns idle and closing sessions; a session's death callback removes it here (and that is the
// last thing the session does, so destroying it inside the callback is safe).
#include "smtp-client/smtp_cache.h"

namespace mta::smtp {

void ConnCache::put(const std::string& key, std::unique_ptr<Session> s) {
    if (!s || !s->idle()) return;
    List& l = idle_[key];
    if (l.size() >= kCachePerDestination || total_ >= kCacheTotal) {
        retire(std::move(s));
        return;
    }
    Session* raw = s.get();
    l.push_back(std::move(s));
    total_++;
    raw->park(kCacheIdleSeconds, [this, key, raw] { remove(key, raw); });
}

std::unique_ptr<Session> ConnCache::take(const std::string& key) {
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    List& l = it->second;
    while (!l.empty()) {
        std::unique_ptr<Session> s = std::move(l.back());
        l.pop_back();
        total_--;
        if (s->parked()) {
            if (l.empty()) idle_.erase(it);
            return s;
        }
    }
    idle_.erase(it);
    return nullptr;
}

void ConnCache::remove(const std::string& key, Session* s) {
    // Called by the session itself (idle expiry after QUIT, or the server hung up): destroy it.
    auto it = idle_.find(key);
    if (it != idle_.end()) {
        for (auto i = it->second.begin(); i != it->second.end(); ++i) {
            if (i->get() != s) continue;
            it->second.erase(i);
            total_--;
            if (it->second.empty()) idle_.erase(it);
            return;
        }
    }
    closing_.remove_if([s](const std::unique_ptr<Session>& p) { return p.get() == s; });
}

void ConnCache::retire(std::unique_ptr<Session> s) {
    Session* raw = s.get();
    closing_.push_back(std::move(s));
    raw->quit([this, raw] { closing_.remove_if([raw](const std::unique_ptr<Session>& p) { return p.get() == raw; }); });
}

void ConnCache::close_all() {
    for (auto& [key, l] : idle_)
        for (auto& s : l) retire(std::move(s));
    idle_.clear();
    total_ = 0;
}

}  // namespace mta::smtp
