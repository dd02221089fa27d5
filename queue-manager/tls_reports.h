// TLS-RPT reports (RFC 8460) from the queue's side: mta-smtp sends each attempt's counts with its
// result; here they are added to the current period's aggregate (kept in the store, key "tlsrpt/period"
// and the policy domains' mailto addresses under "tlsrpt/rua"), and when a UTC day is over (or an admin
// says `mtaqueue tlsrpt send`) one report per policy domain is written into maildrop/ from the null
// sender, as local mail: Pickup queues it (and mta-msgauth DKIM-signs it when dkim_keys has a key for
// the From: domain), like any other message. See mta-queue(8), TLS reporting.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/tlsrpt.h"

namespace mta::queue {

class TlsReports {
public:
    void configure(const Config& cfg);
    bool enabled() const { return enabled_; }

    // One deliver_result's counts (untrusted bytes from mta-smtp: false when they do not decode).
    bool add(std::string_view encoded, std::string_view rua, uint64_t now, std::string& err);
    // The period's day is over: report it. Returns what send() returned ("" when nothing was due).
    std::string tick(uint64_t now);
    // Reports the period so far (it ends now) and starts a new one; a summary line for the admin.
    std::string send(uint64_t now);

    // Persistence (the queue's store, db destinations): load at start; dirty() gives the changed
    // entries (key, value) once.
    void load(std::string_view key, std::string_view value);
    std::vector<std::pair<std::string, std::string>> dirty();

    std::string list_text(uint64_t now) const;
    std::string list_json(uint64_t now) const;

    // The maildrop directory the reports are written into ("maildrop", relative to the chroot).
    void set_maildrop(std::string dir) { maildrop_ = std::move(dir); }

private:
    bool enabled_ = false;
    std::string from_, organization_, hostname_;
    std::string maildrop_ = "maildrop";
    uint64_t start_ = 0;  // the period began (0: nothing counted yet)
    tlsrpt::Aggregate agg_;
    std::map<std::string, std::vector<std::string>> rua_;  // policy domain -> mailto addresses
    bool dirty_ = false;
    uint64_t sent_ = 0;  // reports written by this process, for unique names
};

}  // namespace mta::queue
