// StsService: TXT lookup -> cache check -> HTTPS fetch -> cache store, with RFC 8461 §5.1's rule that a
// failed refresh keeps using an unexpired cached policy. Cache files are written atomically (tmp +
// rename) and re-validated when read; a bad one is removed and logged, never trusted.
#include "resolver/mta_sts.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "resolver/rdata.h"

namespace mta::resolver {

StsService::StsService(event_base* base, SSL_CTX* https, std::string cache_dir, uint16_t port, Dns dns,
                       std::function<time_t()> now)
    : cache_dir_(std::move(cache_dir)), port_(port), dns_(std::move(dns)), now_(std::move(now)),
      pool_(base, https) {}

bool StsService::start(std::string& err) {
    if (mkdir(cache_dir_.c_str(), 0700) != 0 && errno != EEXIST)
        LOG_WARN("event=mta_sts_cache_unavailable dir=%s error=\"%s\"", cache_dir_.c_str(), strerror(errno));
    return pool_.start(err);
}

void StsService::lookup(const std::string& domain, AnswerCb done) {
    auto [it, fresh] = flights_.try_emplace(domain);
    it->second.waiters.push_back(std::move(done));
    if (!fresh) return;  // a lookup for this domain is already under way
    dns_("_mta-sts." + domain, kTypeTXT, [this, domain](const Answer& a) { on_txt(domain, a); });
}

void StsService::on_txt(const std::string& domain, const Answer& a) {
    if (a.dnssec == ipc::DnssecStatus::bogus || (a.rcode != 0 && a.rcode != 3)) {
        std::string why = a.dnssec == ipc::DnssecStatus::bogus ? "DNSSEC-bogus" : a.rcode == 2 ? "SERVFAIL" : a.text;
        return answer_cached_or_none(domain, "_mta-sts TXT lookup failed: " + why);
    }
    std::string why = "no _mta-sts TXT record";
    std::optional<std::string> id;
    if (a.rcode == 0 && !a.records.empty()) id = sts::select_txt(a.records, why);
    if (!id) return answer_cached_or_none(domain, why);
    if (const CachedPolicy* c = cached(domain); c && c->id == *id) {
        return answer(domain, policy_answer(*c, "cached", ""));
    }
    flights_[domain].id = *id;
    fetch(domain, {"A", "AAAA"});
}

void StsService::fetch(const std::string& domain, std::vector<std::string> left) {
    if (left.empty()) return on_fetched(domain, FetchResult{false, "", "no address for mta-sts." + domain});
    uint16_t qtype = left.front() == "A" ? kTypeA : kTypeAAAA;
    left.erase(left.begin());
    std::string host = "mta-sts." + domain;
    dns_(host, qtype, [this, domain, host, left](const Answer& a) {
        if (a.dnssec == ipc::DnssecStatus::bogus || a.rcode != 0 || a.records.empty()) {
            if (a.rcode == 0 || a.rcode == 3 || !left.empty()) return fetch(domain, left);
            return on_fetched(domain, FetchResult{false, "", "address lookup for " + host + " failed"});
        }
        std::string ip = a.records.front();
        LOG_DEBUG("event=mta_sts_fetch domain=%s host=%s ip=%s port=%u", domain.c_str(), host.c_str(), ip.c_str(),
                  unsigned(port_));
        bool ok = pool_.fetch(host, ip, port_, [this, domain](FetchResult r) { on_fetched(domain, std::move(r)); });
        if (!ok) on_fetched(domain, FetchResult{false, "", "too many policy fetches in progress"});
    });
}

void StsService::on_fetched(const std::string& domain, FetchResult r) {
    auto fl = flights_.find(domain);
    if (fl == flights_.end()) return;
    std::string why = r.error;
    if (r.ok) {
        CachedPolicy c;
        c.id = fl->second.id;
        c.fetched = uint64_t(now_());
        c.body = std::move(r.body);
        std::string perr;
        if (sts::parse_policy(c.body, c.policy, perr)) {
            LOG_INFO("event=mta_sts_policy domain=%s id=%s mode=%s max_age=%llu mx=%zu", domain.c_str(), c.id.c_str(),
                     sts::mode_name(c.policy.mode), (unsigned long long)c.policy.max_age, c.policy.mx.size());
            Answer a = policy_answer(c, "fetched", "");
            store(domain, std::move(c));
            return answer(domain, a);
        }
        why = "invalid policy: " + perr;
    }
    LOG_WARN("event=mta_sts_fetch_failed domain=%s reason=\"%s\"", domain.c_str(), log::safe(why).c_str());
    answer_cached_or_none(domain, "policy fetch failed: " + why);
}

const CachedPolicy* StsService::cached(const std::string& domain) {
    uint64_t now = uint64_t(now_());
    auto it = cache_.find(domain);
    if (it == cache_.end()) {
        std::ifstream f(path(domain), std::ios::binary);
        if (!f) return nullptr;
        std::ostringstream ss;
        ss << f.rdbuf();
        std::string text = ss.str(), err;
        CachedPolicy c;
        if (text.size() > kMaxHttpResponseBytes || !decode_cache_file(text, c, err)) {
            LOG_WARN("event=mta_sts_cache_invalid domain=%s reason=\"%s\" action=remove", domain.c_str(),
                     log::safe(err.empty() ? "too large" : err).c_str());
            unlink(path(domain).c_str());
            return nullptr;
        }
        if (cache_.size() >= kMaxStsCacheEntries) cache_.erase(cache_.begin());
        it = cache_.emplace(domain, std::move(c)).first;
    }
    if (it->second.expires() <= now) {
        forget(domain);
        return nullptr;
    }
    return &it->second;
}

void StsService::store(const std::string& domain, CachedPolicy c) {
    std::string file = path(domain), tmp = file + ".tmp";
    std::string text = encode_cache_file(c);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, text.data(), text.size()) == ssize_t(text.size());
    if (fd >= 0) {
        ok = fsync(fd) == 0 && ok;
        close(fd);
    }
    if (!ok || rename(tmp.c_str(), file.c_str()) != 0) {
        LOG_WARN("event=mta_sts_cache_write_failed domain=%s error=\"%s\"", domain.c_str(), strerror(errno));
        unlink(tmp.c_str());
    }
    if (cache_.size() >= kMaxStsCacheEntries && !cache_.count(domain)) cache_.erase(cache_.begin());
    cache_[domain] = std::move(c);
}

void StsService::forget(const std::string& domain) {
    cache_.erase(domain);
    unlink(path(domain).c_str());
}

void StsService::answer_cached_or_none(const std::string& domain, const std::string& why) {
    if (const CachedPolicy* c = cached(domain)) return answer(domain, policy_answer(*c, "cached", why));
    Answer a;
    a.rcode = 0;
    a.text = "no MTA-STS policy: " + why;
    answer(domain, a);
}

Answer StsService::policy_answer(const CachedPolicy& c, const char* source, const std::string& note) const {
    sts::Lookup l;
    l.found = true;
    l.policy = c.policy;
    l.id = c.id;
    l.source = source;
    l.expires = c.expires();
    Answer a;
    a.rcode = 0;
    a.records = sts::encode_lookup(l);
    if (!note.empty()) a.text = "using the cached policy: " + note;
    return a;
}

void StsService::answer(const std::string& domain, const Answer& a) {
    auto fl = flights_.find(domain);
    if (fl == flights_.end()) return;
    auto waiters = std::move(fl->second.waiters);
    flights_.erase(fl);
    LOG_DEBUG("event=mta_sts domain=%s policy=%s text=\"%s\"", domain.c_str(), a.records.empty() ? "none" : "yes",
              log::safe(a.text).c_str());
    for (auto& w : waiters) w(a);
}

}  // namespace mta::resolver
