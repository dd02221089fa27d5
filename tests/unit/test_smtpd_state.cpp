// Unit tests for the smtpd session's transition table and verb table (smtpd/smtpd_state.cpp).
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "smtpd/smtpd_state.h"

using namespace mta::smtpd;
using S = SessionState;

namespace {

std::vector<S> all_states() {
    std::vector<S> v;
    for (int i = 0; i < kSessionStates; i++) v.push_back(static_cast<S>(i));
    return v;
}

std::string refusal(Verb v, S s, bool esmtp = true) {
    Reply r = verb_refusal(v, s, esmtp);
    if (!r) return "ok";
    return std::to_string(r.code) + " " + r.enhanced + " " + r.text;
}

}  // namespace

TEST_CASE("state table: every state has its own name") {
    std::set<std::string> names;
    for (S s : all_states()) {
        std::string n = state_name(s);
        CHECK(n != "invalid");
        names.insert(n);
    }
    CHECK(names.size() == std::size_t(kSessionStates));
}

TEST_CASE("state table: staying is allowed, closed is the end, closing only closes") {
    for (S s : all_states()) CHECK(transition_allowed(s, s));
    for (S to : all_states()) {
        if (to != S::closed) CHECK_FALSE(transition_allowed(S::closed, to));
        if (to != S::closing && to != S::closed) CHECK_FALSE(transition_allowed(S::closing, to));
    }
    CHECK(transition_allowed(S::closing, S::closed));
}

TEST_CASE("state table: a connection error closes any state, and every live state may start closing") {
    for (S s : all_states()) {
        if (s != S::closed) CHECK(transition_allowed(s, S::closed));
        if (s != S::greeting && s != S::closed) CHECK(transition_allowed(s, S::closing));
    }
    CHECK_FALSE(transition_allowed(S::greeting, S::closing));  // start() either greets or gives up
}

TEST_CASE("state table: every state is reachable from the greeting") {
    std::set<S> seen = {S::greeting};
    std::vector<S> todo = {S::greeting};
    while (!todo.empty()) {
        S from = todo.back();
        todo.pop_back();
        for (S to : all_states())
            if (transition_allowed(from, to) && seen.insert(to).second) todo.push_back(to);
    }
    CHECK(seen.size() == std::size_t(kSessionStates));
}

TEST_CASE("state table: the transaction moves forward only through its steps") {
    CHECK(transition_allowed(S::greeting, S::pre_helo));
    CHECK(transition_allowed(S::greeting, S::tls_handshake));  // smtps
    CHECK(transition_allowed(S::pre_helo, S::ready));
    CHECK(transition_allowed(S::ready, S::mail));
    CHECK(transition_allowed(S::mail, S::rcpt));
    CHECK(transition_allowed(S::rcpt, S::wait_open_data));
    CHECK(transition_allowed(S::wait_open_data, S::data));
    CHECK(transition_allowed(S::data, S::wait_commit));
    CHECK(transition_allowed(S::wait_commit, S::ready));
    CHECK(transition_allowed(S::rcpt, S::wait_open_bdat));
    CHECK(transition_allowed(S::wait_open_bdat, S::bdat));
    CHECK(transition_allowed(S::bdat, S::bdat_next));
    CHECK(transition_allowed(S::bdat_next, S::bdat));
    CHECK(transition_allowed(S::bdat, S::wait_commit));

    // No skipping: no MAIL before HELO, no body without a recipient, no reply before the commit.
    CHECK_FALSE(transition_allowed(S::pre_helo, S::mail));
    CHECK_FALSE(transition_allowed(S::tls_handshake, S::ready));  // EHLO again after STARTTLS
    CHECK_FALSE(transition_allowed(S::ready, S::rcpt));
    CHECK_FALSE(transition_allowed(S::mail, S::wait_open_data));
    CHECK_FALSE(transition_allowed(S::mail, S::wait_open_bdat));
    CHECK_FALSE(transition_allowed(S::rcpt, S::data));             // only once the queue gave a file
    CHECK_FALSE(transition_allowed(S::data, S::rcpt));
    CHECK_FALSE(transition_allowed(S::data, S::bdat));
    CHECK_FALSE(transition_allowed(S::bdat_next, S::wait_open_data));
    CHECK_FALSE(transition_allowed(S::bdat_next, S::rcpt));
    CHECK_FALSE(transition_allowed(S::wait_commit, S::data));
    CHECK_FALSE(transition_allowed(S::wait_commit, S::mail));
    // STARTTLS only outside a transaction; AUTH only after EHLO and outside a transaction.
    CHECK_FALSE(transition_allowed(S::mail, S::tls_handshake));
    CHECK_FALSE(transition_allowed(S::rcpt, S::tls_handshake));
    CHECK_FALSE(transition_allowed(S::pre_helo, S::auth_plain));
    CHECK_FALSE(transition_allowed(S::mail, S::auth_login_user));
    // The auth exchange ends in ready or the delayed failure, never in a transaction.
    for (S a : {S::auth_plain, S::auth_login_user, S::auth_login_password, S::auth_delay}) {
        CHECK_FALSE(transition_allowed(a, S::mail));
        CHECK_FALSE(transition_allowed(a, S::pre_helo));
    }
    CHECK(transition_allowed(S::auth_login_user, S::auth_login_password));
    CHECK_FALSE(transition_allowed(S::auth_plain, S::auth_login_password));
}

TEST_CASE("state table: a refused BDAT chunk returns to a state that reads commands") {
    for (S to : all_states())
        if (transition_allowed(S::bdat_discard, to) && to != S::bdat_discard && to != S::closing && to != S::closed)
            CHECK(reads_commands(to));
}

TEST_CASE("state table: commands, SASL lines and body bytes are read in separate states") {
    for (S s : all_states()) {
        CHECK_FALSE((reads_commands(s) && in_auth_exchange(s)));
        CHECK_FALSE((reads_commands(s) && waits_for_queue(s)));
    }
    for (S s : {S::wait_open_data, S::wait_open_bdat, S::wait_commit}) CHECK(waits_for_queue(s));
    std::set<S> commands;
    for (S s : all_states())
        if (reads_commands(s)) commands.insert(s);
    CHECK(commands == std::set<S>{S::pre_helo, S::ready, S::mail, S::rcpt, S::bdat_next});
    for (S s : {S::greeting, S::tls_handshake, S::auth_delay, S::wait_open_data, S::wait_open_bdat, S::wait_milter, S::wait_msgauth, S::wait_commit,
                S::data, S::bdat, S::bdat_discard, S::closing, S::closed}) {
        CHECK_FALSE(reads_commands(s));
        CHECK_FALSE(in_auth_exchange(s));
    }
}

TEST_CASE("verb table: verbs that need no state are taken everywhere commands are read") {
    for (S s : {S::pre_helo, S::ready, S::mail, S::rcpt, S::bdat_next})
        for (Verb v : {Verb::helo, Verb::ehlo, Verb::rset, Verb::noop, Verb::quit, Verb::vrfy, Verb::expn, Verb::help,
                       Verb::not_implemented, Verb::unknown}) {
            CHECK(refusal(v, s) == "ok");
            CHECK(refusal(v, s, false) == "ok");
        }
}

TEST_CASE("verb table: MAIL") {
    CHECK(refusal(Verb::mail, S::pre_helo) == "503 5.5.1 Error: send HELO/EHLO first");
    CHECK(refusal(Verb::mail, S::ready) == "ok");
    CHECK(refusal(Verb::mail, S::ready, false) == "ok");  // after HELO too
    for (S s : {S::mail, S::rcpt, S::bdat_next}) CHECK(refusal(Verb::mail, s) == "503 5.5.1 Error: nested MAIL command");
}

TEST_CASE("verb table: RCPT") {
    CHECK(refusal(Verb::rcpt, S::pre_helo) == "503 5.5.1 Error: send HELO/EHLO first");
    CHECK(refusal(Verb::rcpt, S::ready) == "503 5.5.1 Error: need MAIL command");
    CHECK(refusal(Verb::rcpt, S::mail) == "ok");
    CHECK(refusal(Verb::rcpt, S::rcpt, false) == "ok");
    CHECK(refusal(Verb::rcpt, S::bdat_next) == "503 5.5.1 Error: RCPT after BDAT");
}

TEST_CASE("verb table: DATA") {
    CHECK(refusal(Verb::data, S::pre_helo) == "503 5.5.1 Error: send HELO/EHLO first");
    CHECK(refusal(Verb::data, S::ready) == "503 5.5.1 Error: need MAIL command");
    CHECK(refusal(Verb::data, S::mail) == "554 5.5.1 Error: no valid recipients");
    CHECK(refusal(Verb::data, S::rcpt) == "ok");
    CHECK(refusal(Verb::data, S::rcpt, false) == "ok");
    CHECK(refusal(Verb::data, S::bdat_next) == "503 5.5.1 Error: DATA after BDAT");
}

TEST_CASE("verb table: BDAT needs EHLO, MAIL and a recipient") {
    CHECK(refusal(Verb::bdat, S::pre_helo) == "503 5.5.1 Error: send EHLO first");
    CHECK(refusal(Verb::bdat, S::ready) == "503 5.5.1 Error: need MAIL command");
    CHECK(refusal(Verb::bdat, S::mail) == "554 5.5.1 Error: no valid recipients");
    CHECK(refusal(Verb::bdat, S::mail, false) == "503 5.5.1 Error: need MAIL command");
    CHECK(refusal(Verb::bdat, S::rcpt) == "ok");
    CHECK(refusal(Verb::bdat, S::rcpt, false) == "503 5.5.1 Error: need MAIL command");
    CHECK(refusal(Verb::bdat, S::bdat_next) == "ok");
}

TEST_CASE("verb table: STARTTLS and AUTH only outside a transaction") {
    CHECK(refusal(Verb::starttls, S::pre_helo) == "ok");
    CHECK(refusal(Verb::starttls, S::ready) == "ok");
    for (S s : {S::mail, S::rcpt, S::bdat_next})
        CHECK(refusal(Verb::starttls, s) == "503 5.5.1 Error: MAIL transaction in progress");

    CHECK(refusal(Verb::auth, S::pre_helo) == "503 5.5.1 Error: send EHLO first");
    CHECK(refusal(Verb::auth, S::ready) == "ok");
    CHECK(refusal(Verb::auth, S::ready, false) == "503 5.5.1 Error: send EHLO first");  // HELO is not enough
    for (S s : {S::mail, S::rcpt, S::bdat_next}) {
        CHECK(refusal(Verb::auth, s) == "503 5.5.1 Error: MAIL transaction in progress");
        if (s != S::bdat_next) CHECK(refusal(Verb::auth, s, false) == "503 5.5.1 Error: send EHLO first");
    }
}

TEST_CASE("verb table: states that read no commands refuse every verb") {
    for (S s : all_states()) {
        if (reads_commands(s)) continue;
        for (Verb v : {Verb::helo, Verb::mail, Verb::rcpt, Verb::data, Verb::bdat, Verb::quit})
            CHECK(verb_refusal(v, s, true).code == 503);
    }
}
