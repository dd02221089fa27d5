// SMTP command handlers: check_<cmd> asks the state table whether the verb may run here and checks
// its arguments, replying when it refuses; proceed_<cmd> applies it and moves the state (enter()).
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

// Only reached in states that read commands (reads_commands()). Verbs with a state precondition ask
// verb_refusal() in their check_<verb>, at the place in their checks where they always have; NOOP, QUIT,
// VRFY, EXPN, HELP and RSET have none and run in every such state.
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
    if (milter_refuses(c)) return;
    switch (c.verb) {
    case Verb::helo:
    case Verb::ehlo: {
        bool extended = c.verb == Verb::ehlo;
        if (auto name = check_helo(c, extended)) proceed_helo(std::move(*name), extended);
        break;
    }
    case Verb::mail:
        if (auto a = check_mail(c)) ask_milters_mail(std::move(*a));
        break;
    case Verb::rcpt:
        if (auto a = check_rcpt(c)) ask_milters_rcpt(std::move(*a));
        break;
    case Verb::data:
        if (check_data(c)) proceed_data();
        break;
    case Verb::bdat:
        if (auto b = check_bdat(c)) proceed_bdat(*b);
        break;
    case Verb::rset:
        if (!c.arg.empty()) reply(501, "5.5.4", "Syntax: RSET");
        else proceed_rset();
        break;
    case Verb::noop: reply(250, "2.0.0", "Ok"); break;
    case Verb::quit: close_with(221, "2.0.0", "Bye"); break;
    case Verb::vrfy:
        if (c.arg.empty()) reply(501, "5.5.4", "Syntax: VRFY address");
        else reply(252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case Verb::expn: reply(502, "5.5.1", "EXPN not available"); break;
    case Verb::help: reply(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY"); break;
    case Verb::starttls:
        if (check_starttls(c)) proceed_starttls();
        break;
    case Verb::auth:
        if (auto a = check_auth(c)) proceed_auth(*a);
        break;
    case Verb::not_implemented: ask_milters_unknown(std::string(c.line), {502, "5.5.1", "Error: command not implemented"}); break;
    case Verb::unknown: ask_milters_unknown(std::string(c.line), {500, "5.5.2", "Error: command not recognized"}); break;
    }
}

// HELO/EHLO are taken in every state that reads commands.
std::optional<std::string> Session::check_helo(const Command& c, bool extended) {
    std::string arg = trim_right(c.arg);
    if (arg.empty()) {
        reply(501, "5.5.4", extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
        return std::nullopt;
    }
    // Underscores are not valid in host names, but many Windows clients send them; Postfix takes any
    // name. Tolerate them, nothing else: the name goes into Received: headers.
    std::string probe = arg;
    std::replace(probe.begin(), probe.end(), '_', 'x');
    if (!addr::valid_domain(probe)) {
        reply(501, "5.5.4", "Invalid domain name in HELO/EHLO");
        return std::nullopt;
    }
    return arg;
}

void Session::proceed_helo(std::string name, bool extended) {
    // RFC 5321 §4.1.4: EHLO/HELO mid-session is an implicit RSET.
    abort_body();
    reset_transaction();
    if (milters_) return ask_milters_helo(std::move(name), extended);
    apply_helo(std::move(name), extended);
}

void Session::apply_helo(std::string name, bool extended) {
    helo_ = std::move(name);
    esmtp_ = extended;
    enter(State::ready);
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

std::optional<Session::MailArgs> Session::check_mail(const Command& c) {
    if (Reply r = verb_refusal(Verb::mail, state_, esmtp_)) {
        reply(r);
        return std::nullopt;
    }
    if (!check_submission()) return std::nullopt;
    addr::PathOptions opts;
    opts.allow_null = true;
    opts.smtputf8 = true;  // decided below, once the SMTPUTF8 parameter has been seen
    addr::PathResult r = addr::parse_path(c.arg, opts);
    if (!r.ok) {
        reply(path_error(r, true));
        return std::nullopt;
    }
    if (!esmtp_ && !r.rest.empty()) {
        reply(555, "5.5.4", "Parameters need EHLO");
        return std::nullopt;
    }
    MailParams params;
    if (Reply e = parse_mail_params(r.rest, cfg_->message_size_limit, params)) {
        reply(e);
        return std::nullopt;
    }
    if (params.requiretls && !tls_) {  // never advertised in plaintext; RFC 8689 §4.1
        reply(530, "5.7.10", "REQUIRETLS needs TLS");
        return std::nullopt;
    }
    if (r.mailbox.utf8 && !params.smtputf8) {
        reply(553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8");
        return std::nullopt;
    }
    if (!check_spool_space(params.size)) return std::nullopt;
    return MailArgs{r.mailbox, std::move(params), trim_right(r.rest)};
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

void Session::proceed_mail(MailArgs a) {
    txn_.emplace();
    txn_->sender = std::move(a.sender);
    txn_->params = std::move(a.params);
    txn_->arrival = host_.now();
    enter(State::mail);
    junk_ = 0;
    reply(250, "2.1.0", "Ok");
}

// An expanded recipient is queued as its final addresses, each remembering the original address as
// ORCPT (RFC 3461 §4.2) unless the client gave one, and the client's NOTIFY.
std::optional<Session::RcptArgs> Session::check_rcpt(const Command& c) {
    if (Reply r = verb_refusal(Verb::rcpt, state_, esmtp_)) {
        reply(r);
        return std::nullopt;
    }
    if (txn_->client_rcpts >= cfg_->recipient_limit) {
        reply(452, "4.5.3", "Error: too many recipients");
        errors_--;  // a normal part of large deliveries, not client misbehaviour
        return std::nullopt;
    }
    addr::PathOptions opts;
    opts.smtputf8 = txn_->params.smtputf8;
    opts.allow_postmaster = true;
    addr::PathResult r = addr::parse_path(c.arg, opts);
    if (!r.ok) {
        reply(path_error(r, false));
        return std::nullopt;
    }
    if (!esmtp_ && !r.rest.empty()) {
        reply(555, "5.5.4", "Parameters need EHLO");
        return std::nullopt;
    }
    RcptParams params;
    if (Reply e = parse_rcpt_params(r.rest, params)) {
        reply(e);
        return std::nullopt;
    }
    alias::Maps maps = alias::from_tables(res_->virtual_map.get(), res_->alias_map.get());
    RcptVerdict v = check_recipient(r.mailbox, *cfg_, may_relay(), res_->local_recipients.get(), &maps);
    if (v.reply) {
        if (!v.log_detail.empty())
            LOG_WARN("event=alias_error client=%s rcpt=\"%s\" reason=\"%s\"", client_.ip.c_str(),
                     log::safe(r.mailbox.str()).c_str(), log::safe(v.log_detail).c_str());
        reply(v.reply);
        return std::nullopt;
    }
    // smtpd_dnsbl_zones: decided at connect (smtpd_dnsbl.cpp), refused here so that the envelope is in
    // the log, after the relay check as Postfix's reject_rbl_client usually comes; AUTH lifts it.
    if (!client_.dnsbl.empty() && auth_user_.empty()) {
        LOG_INFO("event=reject client=%s code=554 enhanced=5.7.1 rcpt=<%s> reason=\"dnsbl: %s\"", client_.ip.c_str(),
                 log::safe(r.mailbox.str()).c_str(), client_.dnsbl.c_str());
        reply(554, "5.7.1", "Service unavailable; Client host [" + client_.ip + "] blocked using " + client_.dnsbl);
        return std::nullopt;
    }
    RcptArgs a;
    a.addr = r.mailbox.str();
    a.esmtp = trim_right(r.rest);
    a.expanded = v.expanded.size();
    if (v.expanded.empty()) {
        a.add.push_back({a.addr, std::move(params)});
    } else {
        if (params.orcpt.empty()) params.orcpt = "rfc822;" + a.addr;
        for (auto& e : v.expanded) a.add.push_back({std::move(e), params});
    }
    for (auto it = a.add.begin(); it != a.add.end();) {
        bool dup = false;
        for (auto& q : txn_->rcpts) dup = dup || q.addr == it->addr;
        if (dup) {
            it = a.add.erase(it);
            continue;
        }
        a.bytes += Transaction::commit_bytes(*it);
        ++it;
    }
    if (!txn_->commit_has_room(a.bytes)) {
        reply(452, "4.5.3", a.expanded == 0 ? "Error: too many recipients" : "Error: too many recipients after alias expansion");
        errors_--;  // like recipient_limit: the client sends the rest in another transaction
        return std::nullopt;
    }
    return a;
}

void Session::proceed_rcpt(RcptArgs a) {
    if (a.expanded != 0)
        LOG_DEBUG("event=rcpt_expanded client=%s rcpt=\"%s\" count=%zu", client_.ip.c_str(), log::safe(a.addr).c_str(),
                  a.expanded);
    txn_->rcpt_bytes += a.bytes;
    for (auto& r : a.add) txn_->rcpts.push_back(std::move(r));
    if (txn_->client_rcpts++ == 0) txn_->first_rcpt = a.addr;  // every accepted RCPT counts, as in Postfix
    enter(State::rcpt);
    junk_ = 0;
    reply(250, "2.1.5", "Ok");
}

// RSET is taken in every state that reads commands; before HELO there is nothing to reset to.
void Session::proceed_rset() {
    abort_body();
    reset_transaction();
    if (state_ != State::pre_helo) enter(State::ready);
    reply(250, "2.0.0", "Ok");
}

void Session::reset_transaction() {
    if (milters_ && !milters_->busy()) milters_->abort();  // only milters that saw MAIL hear of it
    txn_.reset();
    rate_bytes_ = rate_seconds_ = 0;
    bdat_remaining_ = 0;
    bdat_last_ = false;
}

bool Session::may_relay() const {
    return !auth_user_.empty() || cfg_->in_mynetworks(reinterpret_cast<const sockaddr*>(&client_.addr));
}

}  // namespace mta::smtpd
