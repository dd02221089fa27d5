// The session's transition table and verb table (see smtpd_state.h). One row per state: where it may
// go, and why. A transition missing here is a bug in the session, and the session stops on it.
#include "smtpd/smtpd_state.h"

namespace mta::smtpd {
namespace {

using S = SessionState;

constexpr uint32_t bit(S s) { return uint32_t(1) << static_cast<int>(s); }

template <typename... T>
constexpr uint32_t bits(T... s) { return (bit(s) | ... | 0); }

static_assert(kSessionStates <= 32, "the transition table is a 32-bit mask per state");

// Every live state may start closing (QUIT, a limit, a timeout, the client's EOF, shutdown) and may be
// closed at once (a connection error); these two are added to every row but the last ones.
constexpr uint32_t kEnd = bits(S::closing, S::closed);

struct Row {
    S from;
    uint32_t to;
};

constexpr Row kTable[] = {
    // 220 written; the milters' connect step first; or no memory.
    {S::greeting, bits(S::pre_helo, S::tls_handshake, S::wait_milter, S::closed)},
    {S::tls_handshake, bits(S::pre_helo) | kEnd},                   // handshake done
    // HELO/EHLO; STARTTLS; a refused BDAT's chunk is skipped, then back here.
    {S::pre_helo, bits(S::ready, S::tls_handshake, S::bdat_discard, S::wait_milter) | kEnd},
    {S::ready, bits(S::tls_handshake, S::auth_plain, S::auth_login_user, S::mail, S::bdat_discard, S::wait_milter) | kEnd},
    // Success or a broken line: ready; a wrong answer: the delayed failure reply.
    {S::auth_plain, bits(S::ready, S::auth_delay) | kEnd},
    {S::auth_login_user, bits(S::auth_login_password, S::ready, S::auth_delay) | kEnd},
    {S::auth_login_password, bits(S::ready, S::auth_delay) | kEnd},
    {S::auth_delay, bits(S::ready) | kEnd},
    // RSET/HELO/EHLO end the transaction (ready).
    {S::mail, bits(S::ready, S::rcpt, S::bdat_discard, S::wait_milter) | kEnd},
    {S::rcpt, bits(S::ready, S::wait_open_data, S::wait_open_bdat, S::bdat_discard, S::wait_milter) | kEnd},
    // The body file arrives, or the queue fails or is gone (ready).
    {S::wait_open_data, bits(S::data, S::ready, S::wait_milter) | kEnd},
    {S::wait_open_bdat, bits(S::bdat, S::ready, S::wait_milter) | kEnd},
    // The end of the body: commit (after mta-msgauth's verdict where it has one), or refused (ready).
    {S::data, bits(S::wait_msgauth, S::wait_commit, S::ready, S::wait_milter) | kEnd},
    {S::bdat, bits(S::wait_msgauth, S::wait_commit, S::bdat_next, S::ready, S::wait_milter) | kEnd},
    // The next chunk; RSET/HELO/EHLO; a chunk over the size limit is skipped.
    {S::bdat_next, bits(S::bdat, S::ready, S::bdat_discard, S::wait_milter) | kEnd},
    // Back to where the refused BDAT came from (or ready, if it ended the transaction).
    {S::bdat_discard, bits(S::pre_helo, S::ready, S::mail, S::rcpt) | kEnd},
    // The milters' verdict: the command goes ahead (or is refused and the session stays where it was),
    // the greeting goes out, the message goes on to mta-msgauth or the queue, or it is over.
    {S::wait_milter, bits(S::pre_helo, S::tls_handshake, S::ready, S::mail, S::rcpt, S::bdat_next, S::data, S::bdat,
                          S::bdat_discard, S::wait_msgauth, S::wait_commit) | kEnd},
    {S::wait_msgauth, bits(S::wait_commit, S::ready) | kEnd},  // accepted: commit; refused: over
    {S::wait_commit, bits(S::ready) | kEnd},  // committed or failed: the transaction is over
    {S::closing, bits(S::closed)},
    {S::closed, 0},
};

static_assert(sizeof kTable / sizeof kTable[0] == kSessionStates, "one row per state");

constexpr bool rows_in_order() {
    for (int i = 0; i < kSessionStates; i++)
        if (static_cast<int>(kTable[i].from) != i) return false;
    return true;
}
static_assert(rows_in_order(), "rows in the order of the enum");

Reply refuse(int code, const char* text) { return Reply{code, "5.5.1", text}; }

}  // namespace

const char* state_name(SessionState s) {
    switch (s) {
    case S::greeting: return "greeting";
    case S::tls_handshake: return "tls_handshake";
    case S::pre_helo: return "pre_helo";
    case S::ready: return "ready";
    case S::auth_plain: return "auth_plain";
    case S::auth_login_user: return "auth_login_user";
    case S::auth_login_password: return "auth_login_password";
    case S::auth_delay: return "auth_delay";
    case S::mail: return "mail";
    case S::rcpt: return "rcpt";
    case S::wait_open_data: return "wait_open_data";
    case S::wait_open_bdat: return "wait_open_bdat";
    case S::data: return "data";
    case S::bdat: return "bdat";
    case S::bdat_next: return "bdat_next";
    case S::bdat_discard: return "bdat_discard";
    case S::wait_milter: return "wait_milter";
    case S::wait_msgauth: return "wait_msgauth";
    case S::wait_commit: return "wait_commit";
    case S::closing: return "closing";
    case S::closed: return "closed";
    }
    return "invalid";
}

bool transition_allowed(SessionState from, SessionState to) {
    if (from == to) return true;
    int i = static_cast<int>(from);
    if (i < 0 || i >= kSessionStates) return false;
    return (kTable[i].to & bit(to)) != 0;
}

bool reads_commands(SessionState s) {
    return s == S::pre_helo || s == S::ready || s == S::mail || s == S::rcpt || s == S::bdat_next;
}

bool in_auth_exchange(SessionState s) {
    return s == S::auth_plain || s == S::auth_login_user || s == S::auth_login_password;
}

bool waits_for_queue(SessionState s) {
    return s == S::wait_open_data || s == S::wait_open_bdat || s == S::wait_commit;
}

// The texts and their order are those clients have always seen; e.g. BDAT before EHLO says "EHLO"
// (RFC 3030 needs it), MAIL before HELO says either.
Reply verb_refusal(Verb v, SessionState s, bool esmtp) {
    if (!reads_commands(s)) return refuse(503, "Error: command out of sequence");  // never asked
    bool pre_helo = s == S::pre_helo;
    bool in_mail = s == S::mail || s == S::rcpt || s == S::bdat_next;
    switch (v) {
    case Verb::mail:
        if (pre_helo) return refuse(503, "Error: send HELO/EHLO first");
        if (in_mail) return refuse(503, "Error: nested MAIL command");
        return {};
    case Verb::rcpt:
        if (pre_helo) return refuse(503, "Error: send HELO/EHLO first");
        if (s == S::ready) return refuse(503, "Error: need MAIL command");
        if (s == S::bdat_next) return refuse(503, "Error: RCPT after BDAT");
        return {};
    case Verb::data:
        if (pre_helo) return refuse(503, "Error: send HELO/EHLO first");
        if (s == S::ready) return refuse(503, "Error: need MAIL command");
        if (s == S::bdat_next) return refuse(503, "Error: DATA after BDAT");
        if (s == S::mail) return refuse(554, "Error: no valid recipients");
        return {};
    case Verb::bdat:
        if (pre_helo) return refuse(503, "Error: send EHLO first");
        if (s == S::ready || !esmtp) return refuse(503, "Error: need MAIL command");
        if (s == S::mail) return refuse(554, "Error: no valid recipients");
        return {};
    case Verb::starttls:
        if (in_mail) return refuse(503, "Error: MAIL transaction in progress");
        return {};
    case Verb::auth:
        if (pre_helo || !esmtp) return refuse(503, "Error: send EHLO first");
        if (in_mail) return refuse(503, "Error: MAIL transaction in progress");
        return {};
    case Verb::helo: case Verb::ehlo: case Verb::rset: case Verb::noop: case Verb::quit: case Verb::vrfy:
    case Verb::expn: case Verb::help: case Verb::not_implemented: case Verb::unknown:
        return {};
    }
    return {};
}

}  // namespace mta::smtpd
