// Bounce classification: what kind of failure a delivery result is, from its enhanced status code and
// reply text. One documented table (mta-queue(8), BOUNCE CLASSES), used for the log, the counters,
// `mtaqueue show` and the suppression list. Pure functions, no I/O.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mta::queue {

// Stored in recipient records: never renumber, only append.
enum class BounceClass : uint8_t {
    none = 0,              // not classified: never failed, or delivered
    bad_mailbox = 1,       // the mailbox does not exist or is disabled
    bad_domain = 2,        // the domain does not exist or accepts no mail
    mailbox_full = 3,
    message_too_big = 4,
    policy_block = 5,      // spam, reputation, block lists, local policy
    rate_limited = 6,      // the receiver asks us to slow down
    tls_auth_required = 7, // TLS, DANE/MTA-STS/REQUIRETLS, or sender authentication (SPF/DKIM/DMARC) required
    other_transient = 8,
    other_permanent = 9,
};
inline constexpr uint8_t kBounceClassMax = 9;
inline constexpr std::size_t kBounceClasses = kBounceClassMax + 1;

// An RFC 3463 enhanced status code, "class.subject.detail": class 2, 4 or 5, subject and detail of 1-3
// digits each. False for any other word (the DSN writer and the classifier share this one reading).
struct EnhancedCode {
    int cls = 0, subject = -1, detail = -1;
};
bool parse_enhanced_code(std::string_view word, EnhancedCode& out);

const char* bounce_class_name(BounceClass c);
std::optional<BounceClass> bounce_class_from_name(std::string_view name);

// A failed attempt's text as the queue stores it: a remote reply reported by mta-smtp
// ("host[addr] said: 550 5.1.1 text (in reply to RCPT TO command)"), or a diagnostic of our own that
// starts with an enhanced code ("4.4.1 destination ... not reachable"). `permanent`: the attempt
// bounced (5xx or our permanent failure) rather than deferred. Never returns none.
BounceClass classify_failure(std::string_view text, bool permanent);

// Failed attempts by class since mta-queue started (mtaqueue stats; the metrics read the same).
struct ClassCounts {
    uint64_t since = 0;  // unix seconds
    std::array<uint64_t, kBounceClasses> deferred{}, bounced{};
};

// The relay name of a bounce decided by the suppression list (no attempt was made): such a bounce never
// renews the entry that caused it.
inline constexpr const char* kSuppressionRelay = "suppression-list";

// A reply that asks the sender (not one recipient) to slow down: 421 (the server closes on us), or a
// rate_limited reply whose enhanced code is X.7.x or missing. Gmail's 4.2.1 "receiving mail at a rate"
// is about its recipient and is not one.
bool slowdown_reply(std::string_view text);

// The classes that make an address worth suppressing: the recipient itself cannot exist.
inline bool hard_bounce(BounceClass c) { return c == BounceClass::bad_mailbox || c == BounceClass::bad_domain; }

}  // namespace mta::queue
