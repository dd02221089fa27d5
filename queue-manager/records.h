// On-disk queue records: versioned binary (u8 version, little-endian fixed-width ints, u32-length-prefixed
// strings) and the big-endian LMDB keys. The decoders are pure and strict: they trust no stored byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/spool_format.h"
#include "common/wire/limits.h"

namespace mta::queue {

// Version 2 added MessageRecord::submit_uid and RecipientRecord::flags, version 3 MessageRecord::hold_reason,
// version 4 RecipientRecord::last_class, version 5 RecipientRecord::held_by/held_at; older records still
// decode. A new version is a new queue format (common/spool_format.h) and wants a spool fixture of the
// old one (tests/integration/make_fixture_spool.py).
inline constexpr uint8_t kRecordVersion = 5;
static_assert(kRecordVersion == kQueueFormat, "a new record version is a new queue format (common/spool_format.h)");
inline constexpr uint64_t kNoUid = UINT64_MAX;     // message did not come from the local sendmail
// The limits are the wire's (common/wire/limits.h): what a peer may send is what a record may hold.
using wire::kMaxAddress;      // sender, rcpt
using wire::kMaxOrcpt;
using wire::kMaxEnvid;        // RFC 3461 ENVID
using wire::kMaxClientField;  // client_addr, client_helo, auth_user
using wire::kMaxErrorText;    // last delivery error kept per recipient
using wire::kMaxHoldReason;   // why the message was queued held

enum class MessageState : uint8_t { active = 0, corrupt = 1 };
// In-flight is never stored: it lives in memory only, so a crash leaves the recipient due again.
enum class RcptState : uint8_t { queued = 0, deferred = 1, bounced = 2, held = 3 };

struct MessageRecord {
    MessageState state = MessageState::active;
    uint64_t arrival = 0;     // unix seconds
    uint64_t size = 0;        // body file size in bytes
    uint8_t body_type = 0;    // 0 7bit, 1 8bitmime, 2 binarymime
    uint8_t smtputf8 = 0;
    uint8_t ret = 0;          // 0 default, 1 FULL, 2 HDRS
    uint8_t requiretls = 0;
    uint32_t nrcpt = 0;       // recipients at arrival
    std::string sender, envid, client_addr, client_helo, auth_user;
    uint64_t submit_uid = kNoUid;  // sendmail/maildrop: the submitting user's uid (from the file owner)
    std::string hold_reason;       // queued held on arrival, and why (DMARC quarantine); "" = not
    bool operator==(const MessageRecord&) const = default;
};

inline constexpr uint8_t kRcptDelayWarned = 1;  // a delay DSN was sent for this recipient
// Never stored (only on a delivered recipient's DSN op): the next hop lacked DSN, the report says "relayed".
inline constexpr uint8_t kRcptRelayed = 2;

struct RecipientRecord {
    RcptState state = RcptState::queued;
    uint64_t notify = 0;
    uint32_t attempts = 0;
    uint64_t next_attempt = 0;  // key of its schedule entry while queued/deferred
    uint64_t last_attempt = 0;
    std::string addr, orcpt, last_error;
    uint8_t flags = 0;          // kRcptDelayWarned
    uint8_t last_class = 0;     // BounceClass of the last failed attempt (bounce_class.h); 0 = none yet
    // Held by an admin (mtaqueue hold): who and when; kNoUid/0 otherwise (also for a message queued
    // held on arrival, whose reason is MessageRecord::hold_reason).
    uint64_t held_by = kNoUid;
    uint64_t held_at = 0;
    bool operator==(const RecipientRecord&) const = default;
    bool scheduled() const { return state == RcptState::queued || state == RcptState::deferred; }
};

// An address on the suppression list (db "suppression", keyed by the lower-cased address).
struct SuppressionRecord {
    uint8_t bounce_class = 0;  // BounceClass that put it there (bad_mailbox, bad_domain; none: by admin)
    uint64_t since = 0;        // unix seconds
    uint64_t until = 0;        // suppressed while now < until
    uint64_t msgid = 0;        // the message whose bounce put it there; 0 = added by an admin
    std::string reason;        // the bounce text, or who added it
    bool operator==(const SuppressionRecord&) const = default;
};

std::string encode(const MessageRecord& m);
std::string encode(const RecipientRecord& r);
std::string encode(const SuppressionRecord& s);
bool decode(std::string_view bytes, MessageRecord& out, std::string& err);
bool decode(std::string_view bytes, RecipientRecord& out, std::string& err);
bool decode(std::string_view bytes, SuppressionRecord& out, std::string& err);

// Every stored text is wire::clean_text, the rule the deliverers check: a record the queue keeps can
// never be refused by mta-smtp or mta-local.
using wire::clean_text;

// Fixed-size big-endian keys so LMDB's byte order is numeric order.
struct Key {
    unsigned char b[20];
    std::size_t n = 0;
    std::string_view view() const { return {reinterpret_cast<const char*>(b), n}; }
};
Key message_key(uint64_t msgid);                              // 8 bytes
Key recipient_key(uint64_t msgid, uint32_t index);            // 12 bytes
Key schedule_key(uint64_t time, uint64_t msgid, uint32_t index);  // 20 bytes
bool parse_message_key(std::string_view k, uint64_t& msgid);
bool parse_recipient_key(std::string_view k, uint64_t& msgid, uint32_t& index);
bool parse_schedule_key(std::string_view k, uint64_t& time, uint64_t& msgid, uint32_t& index);

}  // namespace mta::queue
