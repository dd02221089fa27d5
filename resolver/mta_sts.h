// mta-resolver's MTA-STS policy service (RFC 8461 §3, §5): for a domain, the _mta-sts TXT lookup, the
// policy cache (memory, plus one validated file per domain under <resolver dir>/mta-sts/ so policies
// survive restarts) and the HTTPS fetch on a worker thread. Answers as a resolve_reply to the pseudo
// qtype sts::kQtypeMtaSts: rcode 0 with the policy's records, or rcode 0 with no records and a text
// saying why no policy applies. Concurrent lookups for one domain share one TXT query and one fetch.
#pragma once
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "resolver/answer.h"
#include "resolver/mta_sts_fetch.h"
#include "resolver/mta_sts_http.h"

namespace mta::resolver {

inline constexpr std::size_t kMaxStsCacheEntries = 10000;

class StsService {
public:
    using AnswerCb = std::function<void(const Answer&)>;
    // A DNS lookup through the resolver's own libunbound context.
    using Dns = std::function<void(const std::string& name, uint16_t qtype, AnswerCb cb)>;

    StsService(event_base* base, SSL_CTX* https, std::string cache_dir, uint16_t port, Dns dns,
               std::function<time_t()> now = [] { return time(nullptr); });
    // Creates the cache directory and the fetch pool; false only if the pool cannot start.
    bool start(std::string& err);
    void set_port(uint16_t port) { port_ = port; }
    // `domain` is already a normalized DNS name. `done` runs once, from the event loop.
    void lookup(const std::string& domain, AnswerCb done);

private:
    struct Flight {
        std::vector<AnswerCb> waiters;
        std::string id;  // from the TXT record, while fetching
    };
    void on_txt(const std::string& domain, const Answer& a);
    void fetch(const std::string& domain, std::vector<std::string> qtypes_left);
    void on_fetched(const std::string& domain, FetchResult r);
    // A usable (unexpired) cached policy, from memory or disk; nullptr if none.
    const CachedPolicy* cached(const std::string& domain);
    void store(const std::string& domain, CachedPolicy c);
    void forget(const std::string& domain);
    // Answers every waiter: the cached policy if one applies, else "no policy" with `why`.
    void answer_cached_or_none(const std::string& domain, const std::string& why);
    void answer(const std::string& domain, const Answer& a);
    Answer policy_answer(const CachedPolicy& c, const char* source, const std::string& note) const;
    std::string path(const std::string& domain) const { return cache_dir_ + "/" + domain; }

    std::string cache_dir_;
    uint16_t port_;
    Dns dns_;
    std::function<time_t()> now_;
    FetchPool pool_;
    std::map<std::string, CachedPolicy> cache_;
    std::map<std::string, Flight> flights_;
};

}  // namespace mta::resolver
