// The states of an inbound SMTP session, the transitions between them, and which verbs each state
// takes. Pure functions, no I/O: the session asks them, the unit tests enumerate them.
#pragma once
#include <cstdint>

#include "smtpd/smtpd_command.h"

namespace mta::smtpd {

// A connection waiting for mtad's anvil verdict has no session yet (Server::waiting_): the session is
// created once the client is let in, so that wait is not one of these states.
enum class SessionState : uint8_t {
    greeting,             // created; the 220 is not written yet
    tls_handshake,        // smtps before the first command, or after STARTTLS's 220: nothing is read
    pre_helo,             // waiting for HELO/EHLO (again after STARTTLS, RFC 3207 §4.2)
    ready,                // HELO/EHLO done, no transaction
    auth_plain,           // AUTH PLAIN: the next line is the SASL response
    auth_login_user,      // AUTH LOGIN: the next line is the user name
    auth_login_password,  // AUTH LOGIN: the next line is the password
    auth_delay,           // a failed AUTH's reply is held back (smtpd_auth_failure_delay); nothing is read
    mail,                 // MAIL accepted, no recipient yet
    rcpt,                 // at least one RCPT accepted
    wait_open_data,       // DATA: the queue is asked for a body file; nothing is read
    wait_open_bdat,       // first BDAT: the same; its chunk waits unread in the input
    data,                 // reading the DATA body up to CRLF.CRLF
    bdat,                 // reading a BDAT chunk into the body
    bdat_next,            // a chunk without LAST is in: the message goes on with BDAT only
    bdat_discard,         // reading a refused BDAT chunk only to stay in step with the client
    wait_milter,          // the milters (smtpd_milters) have the command or the message; nothing is read
    wait_msgauth,         // the body is with mta-msgauth (sign or verify); nothing is read until its verdict
    wait_commit,          // the body is handed to the queue; the reply waits for its commit
    closing,              // the last reply is written, reading stopped: close once it is flushed
    closed,               // the connection is freed; the host reaps the session
};

constexpr int kSessionStates = static_cast<int>(SessionState::closed) + 1;

const char* state_name(SessionState s);

// Whether the session may go from `from` to `to`. Staying in a state is always allowed.
bool transition_allowed(SessionState from, SessionState to);

// States in which the session reads command lines (and hands them to the verbs).
bool reads_commands(SessionState s);

// States in which the session reads a SASL response line, not a command.
bool in_auth_exchange(SessionState s);

// States that wait for the queue's answer (a body file, or the commit); nothing is read meanwhile.
bool waits_for_queue(SessionState s);

// The refusal of verb `v` in state `s` (esmtp: the last greeting was EHLO), or an empty Reply when the
// verb may run there. Only the state decides here; each verb checks its arguments itself, some of them
// before asking (the order of the checks is part of the protocol: the replies are compared by clients).
Reply verb_refusal(Verb v, SessionState s, bool esmtp);

}  // namespace mta::smtpd
