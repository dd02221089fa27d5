// Encoding and strict decoding of queue records and keys. Input to the decoders is whatever LMDB
// returns, which may be damaged: every length, enum and trailing byte is checked.
#include "queue-manager/records.h"

#include <initializer_list>

#include "queue-manager/bounce_class.h"

namespace mta::queue {
namespace {

class Writer {
public:
    void u8(uint8_t v) { s_.push_back(char(v)); }
    void u32(uint32_t v) { for (int i = 0; i < 4; i++) s_.push_back(char((v >> (8 * i)) & 0xff)); }
    void u64(uint64_t v) { for (int i = 0; i < 8; i++) s_.push_back(char((v >> (8 * i)) & 0xff)); }
    void str(std::string_view v) { u32(uint32_t(v.size())); s_.append(v); }
    std::string take() { return std::move(s_); }
private:
    std::string s_;
};

class Reader {
public:
    explicit Reader(std::string_view s) : s_(s) {}
    bool u8(uint8_t& v) {
        if (!need(1)) return false;
        v = uint8_t(s_[off_++]);
        return true;
    }
    bool u32(uint32_t& v) { uint64_t x; if (!uint(4, x)) return false; v = uint32_t(x); return true; }
    bool u64(uint64_t& v) { return uint(8, v); }
    bool str(std::string& v, std::size_t max) {
        uint32_t len;
        if (!u32(len)) return false;
        if (len > max) { err_ = "string too long"; return false; }
        if (!need(len)) return false;
        v.assign(s_.substr(off_, len));
        off_ += len;
        return true;
    }
    bool done() {
        if (off_ != s_.size()) { err_ = "trailing bytes"; return false; }
        return true;
    }
    const char* err() const { return err_; }
private:
    bool need(std::size_t n) {
        if (s_.size() - off_ < n) { err_ = "truncated"; return false; }
        return true;
    }
    bool uint(int n, uint64_t& v) {
        if (!need(std::size_t(n))) return false;
        v = 0;
        for (int i = n - 1; i >= 0; i--) v = (v << 8) | uint8_t(s_[off_ + std::size_t(i)]);
        off_ += std::size_t(n);
        return true;
    }
    std::string_view s_;
    std::size_t off_ = 0;
    const char* err_ = "truncated";
};

void put_be(unsigned char* p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = static_cast<unsigned char>(v & 0xff);
}
uint64_t get_be(const unsigned char* p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}
const unsigned char* bytes(std::string_view k) { return reinterpret_cast<const unsigned char*>(k.data()); }

// The checks both record decoders make once the fields are read: framing and a known version first,
// the record's own value checks next, clean text fields last (so the first error reported is the same
// whichever decoder runs).
bool check_framing(bool read_ok, const Reader& r, uint8_t version, std::string& err) {
    if (!read_ok) { err = r.err(); return false; }
    if (version < 1 || version > kRecordVersion) { err = "unknown record version"; return false; }
    return true;
}

struct TextField {
    const std::string& value;
    std::size_t max;
};
bool check_texts(std::initializer_list<TextField> fields, std::string& err) {
    for (auto& f : fields)
        if (!clean_text(f.value, f.max)) { err = "control characters in text"; return false; }
    return true;
}

}  // namespace

std::string encode(const MessageRecord& m) {
    Writer w;
    w.u8(kRecordVersion);
    w.u8(uint8_t(m.state));
    w.u64(m.arrival);
    w.u64(m.size);
    w.u8(m.body_type);
    w.u8(m.smtputf8);
    w.u8(m.ret);
    w.u8(m.requiretls);
    w.u32(m.nrcpt);
    w.str(m.sender);
    w.str(m.envid);
    w.str(m.client_addr);
    w.str(m.client_helo);
    w.str(m.auth_user);
    w.u64(m.submit_uid);
    w.str(m.hold_reason);
    return w.take();
}

bool decode(std::string_view bytes_in, MessageRecord& out, std::string& err) {
    Reader r(bytes_in);
    MessageRecord m;
    uint8_t version = 0, state = 0;
    bool ok = r.u8(version) && r.u8(state) && r.u64(m.arrival) && r.u64(m.size) && r.u8(m.body_type) &&
              r.u8(m.smtputf8) && r.u8(m.ret) && r.u8(m.requiretls) && r.u32(m.nrcpt) &&
              r.str(m.sender, kMaxAddress) && r.str(m.envid, kMaxEnvid) && r.str(m.client_addr, kMaxClientField) &&
              r.str(m.client_helo, kMaxClientField) && r.str(m.auth_user, kMaxClientField) &&
              (version < 2 || r.u64(m.submit_uid)) && (version < 3 || r.str(m.hold_reason, kMaxHoldReason)) &&
              r.done();
    if (!check_framing(ok, r, version, err)) return false;
    if (state > uint8_t(MessageState::corrupt)) { err = "bad message state"; return false; }
    if (m.body_type > 2 || m.smtputf8 > 1 || m.ret > 2 || m.requiretls > 1) { err = "bad flag value"; return false; }
    if (m.nrcpt == 0) { err = "no recipients"; return false; }
    if (!check_texts({{m.sender, kMaxAddress}, {m.envid, kMaxEnvid}, {m.client_addr, kMaxClientField},
                      {m.client_helo, kMaxClientField}, {m.auth_user, kMaxClientField},
                      {m.hold_reason, kMaxHoldReason}}, err))
        return false;
    m.state = MessageState(state);
    out = std::move(m);
    return true;
}

std::string encode(const RecipientRecord& rc) {
    Writer w;
    w.u8(kRecordVersion);
    w.u8(uint8_t(rc.state));
    w.u64(rc.notify);
    w.u32(rc.attempts);
    w.u64(rc.next_attempt);
    w.u64(rc.last_attempt);
    w.str(rc.addr);
    w.str(rc.orcpt);
    w.str(rc.last_error);
    w.u8(rc.flags);
    w.u8(rc.last_class);
    w.u64(rc.held_by);
    w.u64(rc.held_at);
    return w.take();
}

bool decode(std::string_view bytes_in, RecipientRecord& out, std::string& err) {
    Reader r(bytes_in);
    RecipientRecord rc;
    uint8_t version = 0, state = 0;
    bool ok = r.u8(version) && r.u8(state) && r.u64(rc.notify) && r.u32(rc.attempts) && r.u64(rc.next_attempt) &&
              r.u64(rc.last_attempt) && r.str(rc.addr, kMaxAddress) && r.str(rc.orcpt, kMaxOrcpt) &&
              r.str(rc.last_error, kMaxErrorText) && (version < 2 || r.u8(rc.flags)) &&
              (version < 4 || r.u8(rc.last_class)) && (version < 5 || (r.u64(rc.held_by) && r.u64(rc.held_at))) &&
              r.done();
    if (!check_framing(ok, r, version, err)) return false;
    if (rc.flags & ~kRcptDelayWarned) { err = "bad recipient flags"; return false; }
    if (rc.last_class > kBounceClassMax) { err = "bad bounce class"; return false; }
    if (state > uint8_t(RcptState::held)) { err = "bad recipient state"; return false; }
    if ((rc.held_at != 0) != (rc.held_by != kNoUid)) {
        err = "bad hold stamp";
        return false;
    }
    if (rc.addr.empty()) { err = "empty recipient"; return false; }
    if (!check_texts({{rc.addr, kMaxAddress}, {rc.orcpt, kMaxOrcpt}, {rc.last_error, kMaxErrorText}}, err))
        return false;
    rc.state = RcptState(state);
    out = std::move(rc);
    return true;
}

// Versioned on its own (kSuppressionVersion): it started after the message and recipient records.
constexpr uint8_t kSuppressionVersion = 1;

std::string encode(const SuppressionRecord& su) {
    Writer w;
    w.u8(kSuppressionVersion);
    w.u8(su.bounce_class);
    w.u64(su.since);
    w.u64(su.until);
    w.u64(su.msgid);
    w.str(su.reason);
    return w.take();
}

bool decode(std::string_view bytes_in, SuppressionRecord& out, std::string& err) {
    Reader r(bytes_in);
    SuppressionRecord su;
    uint8_t version = 0;
    bool ok = r.u8(version) && r.u8(su.bounce_class) && r.u64(su.since) && r.u64(su.until) && r.u64(su.msgid) &&
              r.str(su.reason, kMaxErrorText) && r.done();
    if (!ok) { err = r.err(); return false; }
    if (version != kSuppressionVersion) { err = "unknown suppression record version"; return false; }
    if (su.bounce_class > kBounceClassMax) { err = "bad bounce class"; return false; }
    if (!check_texts({{su.reason, kMaxErrorText}}, err)) return false;
    out = std::move(su);
    return true;
}

Key message_key(uint64_t msgid) {
    Key k;
    put_be(k.b, msgid, 8);
    k.n = 8;
    return k;
}

Key recipient_key(uint64_t msgid, uint32_t index) {
    Key k;
    put_be(k.b, msgid, 8);
    put_be(k.b + 8, index, 4);
    k.n = 12;
    return k;
}

Key schedule_key(uint64_t time, uint64_t msgid, uint32_t index) {
    Key k;
    put_be(k.b, time, 8);
    put_be(k.b + 8, msgid, 8);
    put_be(k.b + 16, index, 4);
    k.n = 20;
    return k;
}

bool parse_message_key(std::string_view k, uint64_t& msgid) {
    if (k.size() != 8) return false;
    msgid = get_be(bytes(k), 8);
    return true;
}

bool parse_recipient_key(std::string_view k, uint64_t& msgid, uint32_t& index) {
    if (k.size() != 12) return false;
    msgid = get_be(bytes(k), 8);
    index = uint32_t(get_be(bytes(k) + 8, 4));
    return true;
}

bool parse_schedule_key(std::string_view k, uint64_t& time, uint64_t& msgid, uint32_t& index) {
    if (k.size() != 20) return false;
    time = get_be(bytes(k), 8);
    msgid = get_be(bytes(k) + 8, 8);
    index = uint32_t(get_be(bytes(k) + 16, 4));
    return true;
}

}  // namespace mta::queue
