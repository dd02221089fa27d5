// Bounce classification: the table of mta-queue(8), BOUNCE CLASSES, in the same order.
#include "queue-manager/bounce_class.h"

#include <array>
#include <string>

#include "common/address.h"

namespace mta::queue {
namespace {

constexpr std::array<const char*, kBounceClasses> kNames = {
    "none", "bad_mailbox", "bad_domain", "mailbox_full", "message_too_big", "policy_block", "rate_limited",
    "tls_auth_required", "other_transient", "other_permanent"};

bool digits(std::string_view t, int& out) {
    if (t.empty() || t.size() > 3) return false;
    out = 0;
    for (char c : t) {
        if (c < '0' || c > '9') return false;
        out = out * 10 + (c - '0');
    }
    return true;
}

// The enhanced code among the first words of the reply: "550 5.1.1 ...", "5.1.1 ..."; subject -1 if none.
EnhancedCode find_enhanced(std::string_view reply) {
    std::size_t i = 0;
    for (int n = 0; n < 3 && i < reply.size(); n++) {
        std::size_t j = reply.find(' ', i);
        if (j == std::string_view::npos) j = reply.size();
        std::string_view w = reply.substr(i, j - i);
        // Some servers write "550-5.1.1" in the first line of a multi-line reply.
        if (w.size() > 4 && (w[3] == '-' || w[3] == ' ') && w[0] >= '2' && w[0] <= '5') w.remove_prefix(4);
        if (EnhancedCode t; parse_enhanced_code(w, t)) return t;
        i = j + 1;
    }
    return EnhancedCode{};
}

// The remote reply in a failure text as mta-smtp reports it ("host[addr] said: 550 5.1.1 text (in reply
// to RCPT TO command)" -> "550 5.1.1 text"); our own diagnostics ("4.4.1 ...") as they are.
std::string_view remote_reply(std::string_view text) {
    std::string_view reply = text;
    if (std::size_t said = text.find("] said: "); said != std::string_view::npos) reply = text.substr(said + 8);
    if (std::size_t tail = reply.rfind(" (in reply to "); tail != std::string_view::npos) reply = reply.substr(0, tail);
    return reply;
}

bool has_any(const std::string& text, std::initializer_list<const char*> words) {
    for (const char* w : words)
        if (text.find(w) != std::string::npos) return true;
    return false;
}

bool is(const EnhancedCode& e, int subject, int detail) { return e.subject == subject && e.detail == detail; }

}  // namespace

bool parse_enhanced_code(std::string_view w, EnhancedCode& e) {
    std::size_t a = w.find('.');
    std::size_t b = a == std::string_view::npos ? a : w.find('.', a + 1);
    if (a != 1 || b == std::string_view::npos || (w[0] != '2' && w[0] != '4' && w[0] != '5')) return false;
    EnhancedCode c;
    if (!digits(w.substr(a + 1, b - a - 1), c.subject) || !digits(w.substr(b + 1), c.detail)) return false;
    c.cls = w[0] - '0';
    e = c;
    return true;
}

const char* bounce_class_name(BounceClass c) {
    auto i = static_cast<std::size_t>(c);
    return i < kNames.size() ? kNames[i] : "none";
}

std::optional<BounceClass> bounce_class_from_name(std::string_view name) {
    for (std::size_t i = 0; i < kNames.size(); i++)
        if (name == kNames[i]) return BounceClass(i);
    return std::nullopt;
}

bool slowdown_reply(std::string_view text) {
    std::string_view reply = remote_reply(text);
    if (reply.substr(0, 4) == "421 " || reply == "421") return true;
    if (classify_failure(text, false) != BounceClass::rate_limited) return false;
    EnhancedCode e = find_enhanced(reply);
    return e.subject == -1 || e.subject == 7;
}

BounceClass classify_failure(std::string_view text, bool permanent) {
    std::string_view reply = remote_reply(text);
    EnhancedCode e = find_enhanced(reply);
    std::string t = addr::lower(reply.substr(0, 2048));

    // 1. Slow down: the adaptive shaping reacts to these, whatever else the code says.
    bool too_many_rcpts = is(e, 5, 3) || t.find("too many recipients") != std::string::npos;
    if (is(e, 7, 28) || (!too_many_rcpts && has_any(t, {"rate limit", "ratelimit", "rate-limit", "too many",
                                                         "throttl", "slow down", "sending rate", "unusual rate",
                                                         "at a rate", "server busy", "unexpected volume",
                                                         "frequency limit"})))
        return BounceClass::rate_limited;

    // 2. TLS and authentication demanded by the receiver or by our own TLS policy (DANE, MTA-STS,
    // REQUIRETLS), and sender authentication (RFC 7372 X.7.20-X.7.27, DMARC policy rejections).
    if (e.subject == 7 && (e.detail == 4 || e.detail == 5 || e.detail == 8 || e.detail == 10 ||
                           e.detail == 11 || (e.detail >= 20 && e.detail <= 27) || e.detail == 30))
        return BounceClass::tls_auth_required;
    if (has_any(t, {"starttls", "tls is required", "tls required", "encryption required", "must use tls",
                    "authentication required", "unauthenticated", "dmarc", " spf ", "spf check", "dkim"}))
        return BounceClass::tls_auth_required;

    // 3. The enhanced code, where it says something specific.
    if (e.subject == 1 && (e.detail == 1 || e.detail == 3 || e.detail == 6)) return BounceClass::bad_mailbox;
    // X.1.10 is "null MX" (RFC 7505), but one large provider sends it for an unknown recipient.
    if (is(e, 1, 10)) return has_any(t, {"null mx", "does not accept mail"}) ? BounceClass::bad_domain
                                                                             : BounceClass::bad_mailbox;
    if (is(e, 1, 2)) return BounceClass::bad_domain;
    if ((is(e, 2, 1) && permanent) || is(e, 7, 13) || is(e, 7, 17)) return BounceClass::bad_mailbox;
    if (is(e, 7, 18)) return BounceClass::bad_domain;
    if (e.subject == 4 && (e.detail == 4 || e.detail == 6) && permanent)
        return e.detail == 4 ? BounceClass::bad_domain : BounceClass::other_permanent;
    if (is(e, 2, 2)) return BounceClass::mailbox_full;
    if (is(e, 2, 3) || is(e, 3, 4)) return BounceClass::message_too_big;
    if (e.subject == 7) return BounceClass::policy_block;

    // 4. The text, for replies without a useful enhanced code (X.0.0, X.1.0, X.2.0 or none).
    if (has_any(t, {"mailbox full", "mailbox is full", "over quota", "quota exceeded", "exceeded storage",
                    "exceeds quota", "mailbox quota"}))
        return BounceClass::mailbox_full;
    if (has_any(t, {"too big", "too large", "size limit", "message size", "exceeds the maximum size",
                    "maximum message size"}))
        return BounceClass::message_too_big;
    if (has_any(t, {"spam", "blocked", "blacklist", "blocklist", "block list", "black list", "reputation",
                    "listed at", "listed on", "listed in", "banned", "policy"}))
        return BounceClass::policy_block;
    if (permanent) {
        if (has_any(t, {"domain not found", "no such domain", "domain does not exist", "unrouteable",
                        "unroutable", "nxdomain", "host not found", "domain name not found"}))
            return BounceClass::bad_domain;
        if (has_any(t, {"user unknown", "unknown user", "no such user", "no such mailbox", "mailbox unavailable",
                        "mailbox not found", "does not exist", "unknown recipient", "invalid recipient",
                        "recipient not found", "user not found", "no mailbox", "address rejected",
                        "recipient rejected", "not a valid mailbox", "mailbox disabled", "account disabled"}))
            return BounceClass::bad_mailbox;
    }
    return permanent ? BounceClass::other_permanent : BounceClass::other_transient;
}

}  // namespace mta::queue
