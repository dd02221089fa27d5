// SMTP command handlers: check_<cmd> validates state and arguments, proceed_<cmd> changes state.
// Every reply carries an enhanced status code (RFC 2034) except the greeting and the EHLO list.
#include <algorithm>
#include <string>

#include "common/log.h"
#include "smtpd/smtpd_policy.h"
#include "smtpd/smtpd_session.h"

namespace mta::smtpd {
namespace {

std::string trim_right(std::string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

// The parser reports 5.1.3 (bad destination syntax); for senders RFC 3463 has 5.1.7.
Reply path_error(const addr::PathResult& r, bool sender) {
    std::string enh = r.enhanced;
    if (enh == "5.6.7") return Reply{553, "5.6.7", r.error};
    if (sender && enh == "5.1.3") return Reply{501, "5.1.7", "Bad sender address syntax: " + r.error};
    return Reply{501, r.enhanced, (sender ? "Bad sender address syntax: " : "Bad recipient address syntax: ") + r.error};
}

// smtpd_junk_command_limit: commands that never move mail forward. A client may use them, but not
// for ever: each accepted MAIL, RCPT or message starts the count again.
bool junk_command(Verb v) {
    switch (v) {
    case Verb::noop: case Verb::rset: case Verb::vrfy: case Verb::expn: case Verb::help:
    case Verb::helo: case Verb::ehlo:
        return true;
    default:
        return false;
    }
}

}  // namespace

void Session::dispatch(const Command& c) {
    if (junk_command(c.verb) && ++junk_ > cfg_->smtpd_junk_command_limit) {
        LOG_INFO("event=junk_limit client=%s commands=%llu", client_.ip.c_str(), static_cast<unsigned long long>(junk_));
        close_with(421, "4.7.0", cfg_->hostname + " Error: too many commands without progress");
        return;
    }
    if (c.bad_syntax) {
        reply(501, "5.5.4", c.verb == Verb::mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>");
        return;
    }
    switch (c.verb) {
    case Verb::helo: cmd_helo(c, false); break;
    case Verb::ehlo: cmd_helo(c, true); break;
    case Verb::mail: cmd_mail(c); break;
    case Verb::rcpt: cmd_rcpt(c); break;
    case Verb::data: cmd_data(c); break;
    case Verb::bdat: cmd_bdat(c); break;
    case Verb::rset:
        if (!c.arg.empty()) reply(501, "5.5.4", "Syntax: RSET");
        else cmd_rset();
        break;
    case Verb::noop: reply(250, "2.0.0", "Ok"); break;
    case Verb::quit: close_with(221, "2.0.0", "Bye"); break;
    case Verb::vrfy:
        if (c.arg.empty()) reply(501, "5.5.4", "Syntax: VRFY address");
        else reply(252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case Verb::expn: reply(502, "5.5.1", "EXPN not available"); break;
    case Verb::help: reply(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY"); break;
    case Verb::starttls: cmd_starttls(c); break;
    case Verb::auth: cmd_auth(c); break;
    case Verb::not_implemented: reply(502, "5.5.1", "Error: command not implemented"); break;
    case Verb::unknown: reply(500, "5.5.2", "Error: command not recognized"); break;
    }
}

void Session::cmd_helo(const Command& c, bool extended) {
    std::string arg = trim_right(c.arg);
    if (arg.empty()) {
        reply(501, "5.5.4", extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
        return;
    }
    // Underscores are not valid in host names, but many Windows clients send them; Postfix takes any
    // name. Tolerate them, nothing else: the name goes into Received: headers.
    std::string probe = arg;
    std::replace(probe.begin(), probe.end(), '_', 'x');
    if (!addr::valid_domain(probe)) {
        reply(501, "5.5.4", "Invalid domain name in HELO/EHLO");
        return;
    }
    // RFC 5321 §4.1.4: EHLO/HELO mid-session is an implicit RSET.
    abort_body();
    reset_transaction();
    helo_ = arg;
    esmtp_ = extended;
    state_ = State::helo;
    if (!extended) {
        reply(250, "", cfg_->hostname);
        return;
    }
    std::vector<std::string> ext = {cfg_->hostname, "PIPELINING", "SIZE " + std::to_string(cfg_->message_size_limit),
                                    "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "CHUNKING"};
    if (res_->tls && !tls_) ext.push_back("STARTTLS");
    if (tls_) ext.push_back("REQUIRETLS");  // RFC 8689 §4.1: only on a TLS-protected session
    if (auth_offered()) ext.push_back("AUTH PLAIN LOGIN");
    reply_lines(250, "", ext);
}

bool Session::check_mail(const Command& c) {
    (void)c;
    if (state_ == State::connected) {
        reply(503, "5.5.1", "Error: send HELO/EHLO first");
        return false;
    }
    if (state_ != State::helo) {
        reply(503, "5.5.1", "Error: nested MAIL command");
        return false;
    }
    return true;
}

void Session::cmd_mail(const Command& c) {
    if (!check_mail(c) || !check_submission()) return;
    addr::PathOptions opts;
    opts.allow_null = true;
    opts.smtputf8 = true;  // decided below, once the SMTPUTF8 parameter has been seen
    addr::PathResult r = addr::parse_path(c.arg, opts);
    if (!r.ok) {
        Reply e = path_error(r, true);
        reply(e.code, e.enhanced, e.text);
        return;
    }
    if (!esmtp_ && !r.rest.empty()) {
        reply(555, "5.5.4", "Parameters need EHLO");
        return;
    }
    MailParams params;
    if (Reply e = parse_mail_params(r.rest, cfg_->message_size_limit, params)) {
        reply(e.code, e.enhanced, e.text);
        return;
    }
    if (params.requiretls && !tls_) {  // never advertised in plaintext; RFC 8689 §4.1
        reply(530, "5.7.10", "REQUIRETLS needs TLS");
        return;
    }
    if (r.mailbox.utf8 && !params.smtputf8) {
        reply(553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8");
        return;
    }
    if (!check_spool_space(params.size)) return;
    proceed_mail(r.mailbox, std::move(params));
}

// queue_minfree: a message that cannot be stored is refused before its body is sent, not after
// (Postfix's wording). A shortage of ours is no client error: it does not count towards smtpd_error_limit.
bool Session::check_spool_space(uint64_t declared_size) {
    std::optional<uint64_t> free = host_.spool_free();
    if (!free || spool_has_room(*free, declared_size, cfg_->queue_minfree, cfg_->message_size_limit)) return true;
    LOG_WARN("event=reject client=%s code=452 enhanced=4.3.1 reason=\"insufficient spool space\" free=%llu size=%llu "
             "queue_minfree=%llu", client_.ip.c_str(), static_cast<unsigned long long>(*free),
             static_cast<unsigned long long>(declared_size), static_cast<unsigned long long>(cfg_->queue_minfree));
    reply(452, "4.3.1", "Insufficient system storage");
    errors_--;
    return false;
}

void Session::proceed_mail(const addr::Mailbox& sender, MailParams params) {
    txn_.emplace();
    txn_->sender = sender;
    txn_->params = std::move(params);
    txn_->arrival = host_.now();
    state_ = State::mail;
    junk_ = 0;
    reply(250, "2.1.0", "Ok");
}

bool Session::check_rcpt() {
    if (state_ != State::mail || !txn_) {
        reply(503, "5.5.1", state_ == State::connected ? "Error: send HELO/EHLO first" : "Error: need MAIL command");
        return false;
    }
    if (txn_->chunking) {
        reply(503, "5.5.1", "Error: RCPT after BDAT");
        return false;
    }
    if (txn_->client_rcpts >= cfg_->recipient_limit) {
        reply(452, "4.5.3", "Error: too many recipients");
        errors_--;  // a normal part of large deliveries, not client misbehaviour
        return false;
    }
    return true;
}

void Session::cmd_rcpt(const Command& c) {
    if (!check_rcpt()) return;
    addr::PathOptions opts;
    opts.smtputf8 = txn_->params.smtputf8;
    opts.allow_postmaster = true;
    addr::PathResult r = addr::parse_path(c.arg, opts);
    if (!r.ok) {
        Reply e = path_error(r, false);
        reply(e.code, e.enhanced, e.text);
        return;
    }
    if (!esmtp_ && !r.rest.empty()) {
        reply(555, "5.5.4", "Parameters need EHLO");
        return;
    }
    RcptParams params;
    if (Reply e = parse_rcpt_params(r.rest, params)) {
        reply(e.code, e.enhanced, e.text);
        return;
    }
    alias::Maps maps = alias::from_tables(res_->virtual_map.get(), res_->alias_map.get());
    RcptVerdict v = check_recipient(r.mailbox, *cfg_, may_relay(), res_->local_recipients.get(), &maps);
    if (v.reply) {
        if (!v.log_detail.empty())
            LOG_WARN("event=alias_error client=%s rcpt=\"%s\" reason=\"%s\"", client_.ip.c_str(),
                     log::safe(r.mailbox.str()).c_str(), log::safe(v.log_detail).c_str());
        reply(v.reply.code, v.reply.enhanced, v.reply.text);
        return;
    }
    proceed_rcpt(r.mailbox, std::move(params), std::move(v.expanded));
}

// An expanded recipient is queued as its final addresses, each remembering the original address as
// ORCPT (RFC 3461 §4.2) unless the client gave one, and the client's NOTIFY.
void Session::proceed_rcpt(const addr::Mailbox& rcpt, RcptParams params, std::vector<std::string> expanded) {
    std::string a = rcpt.str();
    std::vector<Transaction::Rcpt> add;
    if (expanded.empty()) {
        add.push_back({a, std::move(params)});
    } else {
        if (params.orcpt.empty()) params.orcpt = "rfc822;" + a;
        for (auto& e : expanded) add.push_back({std::move(e), params});
    }
    std::size_t bytes = 0;
    for (auto it = add.begin(); it != add.end();) {
        bool dup = false;
        for (auto& r : txn_->rcpts) dup = dup || r.addr == it->addr;
        if (dup) {
            it = add.erase(it);
            continue;
        }
        bytes += 3 * 6 + 8 + it->addr.size() + it->params.orcpt.size();  // rcpt, notify, orcpt fields
        ++it;
    }
    // The commit message to the queue is one IPC datagram: keep the recipients well inside it.
    if (txn_->rcpt_bytes + bytes > ipc::kMaxMessage - 16 * 1024) {
        reply(452, "4.5.3", expanded.empty() ? "Error: too many recipients" : "Error: too many recipients after alias expansion");
        errors_--;  // like recipient_limit: the client sends the rest in another transaction
        return;
    }
    if (!expanded.empty())
        LOG_DEBUG("event=rcpt_expanded client=%s rcpt=\"%s\" count=%zu", client_.ip.c_str(), log::safe(a).c_str(),
                  expanded.size());
    txn_->rcpt_bytes += bytes;
    for (auto& r : add) txn_->rcpts.push_back(std::move(r));
    if (txn_->client_rcpts++ == 0) txn_->first_rcpt = a;  // every accepted RCPT counts, as in Postfix
    junk_ = 0;
    reply(250, "2.1.5", "Ok");
}

void Session::cmd_rset() {
    abort_body();
    reset_transaction();
    if (state_ != State::connected) state_ = State::helo;
    reply(250, "2.0.0", "Ok");
}

void Session::reset_transaction() {
    txn_.reset();
    rate_bytes_ = rate_seconds_ = 0;
    bdat_remaining_ = 0;
    bdat_last_ = false;
}

bool Session::may_relay() const {
    return !auth_user_.empty() || cfg_->in_mynetworks(reinterpret_cast<const sockaddr*>(&client_.addr));
}

}  // namespace mta::smtpd
