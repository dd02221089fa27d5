// mta-smtpd's side of the milters (smtpd_milters; mta-smtpd(8) MILTER). A session with milters owns a
// milter::Chain: the connection is shown to them before the 220, then HELO, MAIL, RCPT, DATA and unknown
// commands before they are answered, and the message after its end, before mta-msgauth and the queue.
// While they think the session is in wait_milter and reads nothing. Their changes are applied to the
// held message (a new memfd) and to the transaction's envelope; mtad connects the sockets, since the
// chroot has no filesystem (master/master_milter.cpp).
#include <sys/socket.h>

#include <algorithm>
#include <event2/bufferevent.h>
#include <strings.h>

#include "common/log.h"
#include "common/text.h"
#include "common/version.h"
#include "common/wire/wire.h"
#include "smtpd/smtpd_server.h"
#include "smtpd/smtpd_session.h"

namespace mta::smtpd {
namespace {

std::vector<std::string> envelope_args(const std::string& addr, const std::string& esmtp) {
    std::vector<std::string> args{"<" + addr + ">"};
    for (auto& p : split_list(esmtp)) args.push_back(p);
    return args;
}

std::string domain_of(const std::string& addr) {
    auto at = addr.rfind('@');
    return at == std::string::npos ? std::string() : addr::lower(addr.substr(at + 1));
}

}  // namespace

// ---- the steps

void Session::start_milters() {
    milters_ = std::make_unique<milter::Chain>(base_, cfg_, cfg_->smtpd_milters, static_cast<milter::Owner&>(*this));
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (getsockname(bufferevent_getfd(bev_.get()), reinterpret_cast<sockaddr*>(&local), &len) == 0) local_addr_ = local;
    milter::ConnectInfo info;
    info.hostname = "unknown";  // mta-smtpd does no reverse lookup; Postfix sends "unknown" then too
    info.family = client_.ipv6 ? milter::SMFIA_INET6 : milter::SMFIA_INET;
    info.port = numeric_port(client_.addr);
    info.address = client_.ip;
    enter(State::wait_milter);
    milter_back_ = State::wait_milter;  // connect: the greeting goes out either way (milter_done)
    milters_->start(std::move(info));
}

void Session::ask_milters(State back, const std::function<void(milter::Chain&)>& ask, std::function<void()> pass,
                          std::function<void()> refused) {
    milter_back_ = back;
    milter_pass_ = std::move(pass);
    milter_refused_ = std::move(refused);
    enter(State::wait_milter);
    ask(*milters_);
}

void Session::ask_milters_helo(std::string name, bool extended) {
    State back = state_ == State::pre_helo ? State::pre_helo : State::ready;  // the transaction is reset already
    std::string arg = name;
    ask_milters(back, [&arg](milter::Chain& c) { c.helo(arg); },
                [this, name = std::move(name), extended]() mutable { apply_helo(std::move(name), extended); });
}

void Session::ask_milters_mail(MailArgs a) {
    if (!milters_) return proceed_mail(std::move(a));
    milter_sender_ = a.sender.str();
    auto args = envelope_args(milter_sender_, a.esmtp);
    ask_milters(state_, [&args](milter::Chain& c) { c.mail(args); },
                [this, a = std::move(a)]() mutable { proceed_mail(std::move(a)); });
}

void Session::ask_milters_rcpt(RcptArgs a) {
    if (!milters_) return proceed_rcpt(std::move(a));
    milter_rcpt_ = a.addr;
    auto args = envelope_args(a.addr, a.esmtp);
    ask_milters(state_, [&args](milter::Chain& c) { c.rcpt(args); },
                [this, a = std::move(a)]() mutable {
                    milter_rcpt_.clear();
                    proceed_rcpt(std::move(a));
                },
                [this] { milter_rcpt_.clear(); });
}

// After the body file is open (the queue id exists): refused, the transaction is over and a BDAT's
// chunk is read and dropped.
void Session::ask_milters_data(bool data) {
    ask_milters(State::ready, [](milter::Chain& c) { c.data(); }, [this, data] { open_data(data); },
                [this, data] {
                    uint64_t chunk = bdat_remaining_;
                    abort_body();
                    reset_transaction();
                    if (!data) discard_chunk(chunk, State::ready);
                });
}

void Session::ask_milters_unknown(const std::string& line, const Reply& ours) {
    if (!milters_) return reply(ours);
    std::string text = ours.text;
    int code = ours.code;
    const char* enh = ours.enhanced;
    ask_milters(state_, [&line](milter::Chain& c) { c.unknown(line); },
                [this, code, enh, text, back = state_] {
                    enter(back);
                    reply(code, enh, text);
                });
}

// Connect-step refusals and broken milters (under tempfail or reject) hold for the rest of the
// session, as in Postfix: every command but QUIT, NOOP and RSET gets that reply.
bool Session::milter_refuses(const Command& c) {
    if (!milter_refusal_ || c.verb == Verb::quit || c.verb == Verb::noop || c.verb == Verb::rset) return false;
    milter_reply(*milter_refusal_);
    if (c.verb == Verb::bdat)
        if (auto b = parse_bdat(c.arg)) discard_chunk(b->size, state_);  // stay in step with the client
    return true;
}

// A 421 from a milter closes the connection, as in Postfix (and as the code says).
void Session::milter_reply(const milter::Verdict& v) {
    if (v.code != 421) return reply_lines(v.code, v.enhanced.c_str(), v.text);
    std::string text;
    for (const std::string& l : v.text) text += (text.empty() ? "" : " ") + l;
    abort_body();
    close_with(421, v.enhanced.c_str(), text);
}

void Session::milter_done(milter::Stage stage, const milter::Verdict& v) {
    if (ending() || state_ != State::wait_milter) return;
    using K = milter::Verdict::Kind;
    auto pass = std::move(milter_pass_);
    auto refused = std::move(milter_refused_);
    milter_pass_ = nullptr;
    milter_refused_ = nullptr;
    if (v.kind == K::shutdown) {
        LOG_INFO("event=milter_shutdown milter=%s stage=%s%s", log::safe(v.milter).c_str(), milter::stage_name(stage),
                 milter_log_context().c_str());
        abort_body();
        close_with(421, "4.7.0", cfg_->hostname + " Service unavailable - closing connection");
        return;
    }
    bool refusal = v.kind == K::reject || v.kind == K::tempfail;
    if (refusal)
        LOG_INFO("event=milter_reject milter=%s stage=%s code=%d enhanced=%s%s%s", log::safe(v.milter).c_str(),
                 milter::stage_name(stage), v.code, v.enhanced.c_str(), v.failure ? " default_action=yes" : "",
                 milter_log_context().c_str());
    if (refusal && (v.failure || stage == milter::Stage::connect)) milter_refusal_ = v;
    if (refusal && stage == milter::Stage::mail) milters_->abort();  // no transaction: the milters forget it
    if (stage == milter::Stage::connect) {
        greet();
        return resume();
    }
    if (stage == milter::Stage::content) {
        content_verdict(v);
        return resume();
    }
    if (refusal) {
        enter(milter_back_);
        if (refused) refused();
        milter_reply(v);
    } else {
        pass();  // a discard at MAIL creates the transaction here
        if (v.kind == K::discard && txn_) txn_->milter_discard = v.milter;
    }
    resume();
}

// ---- the message

void Session::run_content_milters() {
    BodySink& body = *txn_->body;
    body.flush();
    if (body.failed) return end_transaction(451, "4.3.0", "Error: local problem writing the message");
    if (!txn_->milter_discard.empty()) {  // discarded at MAIL, RCPT or DATA: the milters need not see it
        txn_->milters_done = true;
        return content_verdict(milter::Verdict{milter::Verdict::Kind::discard, 0, {}, {}, txn_->milter_discard, false});
    }
    int fd = body.held.get();
    ask_milters(State::ready, [fd](milter::Chain& c) { c.content(fd); }, nullptr);
}

void Session::content_verdict(const milter::Verdict& v) {
    using K = milter::Verdict::Kind;
    const std::string qid = wire::format_qid(txn_->body->msgid);
    if (v.kind == K::reject || v.kind == K::tempfail) {
        abort_body();
        reset_transaction();
        enter(State::ready);
        milter_reply(v);
        return;
    }
    txn_->milters_done = true;
    if (v.kind == K::pass && !apply_milter_changes()) return;
    if (v.kind == K::discard || !txn_->milter_discard.empty()) {
        const std::string& who = v.kind == K::discard ? v.milter : txn_->milter_discard;
        LOG_INFO("event=milter_discard qid=%s client=%s milter=%s", qid.c_str(), client_.ip.c_str(),
                 log::safe(who).c_str());
        abort_body();
        reset_transaction();
        enter(State::ready);
        messages_++;
        reply(250, "2.0.0", "Ok: queued as " + qid);  // as for any message: the client learns nothing
        return;
    }
    commit_body();
}

// The envelope and message changes of the milters. False when the session has answered already.
bool Session::apply_milter_changes() {
    const milter::Changes& ch = milters_->changes();
    const std::string qid = wire::format_qid(txn_->body->msgid);
    BodySink& body = *txn_->body;
    if (milters_->message().changed()) {
        std::string err;
        UniqueFd fd = milters_->message().write(err);
        if (!fd) {
            LOG_ERROR("event=milter_error qid=%s reason=\"writing the changed message: %s\"", qid.c_str(), err.c_str());
            end_transaction(451, "4.3.0", "Error: local problem writing the message");
            return false;
        }
        body.held = std::move(fd);
    }
    if (ch.sender) {
        if (auto m = milter::parse_address(ch.sender->first, true)) txn_->sender = *m;
        else LOG_WARN("event=milter_bad_change qid=%s change=chgfrom address=\"%s\"", qid.c_str(),
                      log::safe(ch.sender->first).c_str());
    }
    for (const std::string& d : ch.del_rcpts) {
        auto m = milter::parse_address(d, false);
        std::string want = m ? m->str() : d;
        std::erase_if(txn_->rcpts, [&](const Transaction::Rcpt& r) {
            return strcasecmp(r.addr.c_str(), want.c_str()) == 0 ||
                   strcasecmp(r.params.orcpt.c_str(), ("rfc822;" + want).c_str()) == 0;
        });
    }
    for (const auto& [a, args] : ch.add_rcpts) {
        auto m = milter::parse_address(a, false);
        if (!m) {
            LOG_WARN("event=milter_bad_change qid=%s change=addrcpt address=\"%s\"", qid.c_str(), log::safe(a).c_str());
            continue;
        }
        Transaction::Rcpt r{m->str(), {}};
        if (!args.empty() && parse_rcpt_params(args, r.params))
            LOG_WARN("event=milter_bad_change qid=%s change=addrcpt args=\"%s\" (ignored)", qid.c_str(), log::safe(args).c_str());
        std::size_t bytes = Transaction::commit_bytes(r);
        bool dup = std::any_of(txn_->rcpts.begin(), txn_->rcpts.end(), [&](auto& q) { return q.addr == r.addr; });
        if (dup) continue;
        if (!txn_->commit_has_room(bytes)) {
            LOG_WARN("event=milter_bad_change qid=%s change=addrcpt reason=\"too many recipients\"", qid.c_str());
            break;
        }
        txn_->rcpt_bytes += bytes;
        txn_->rcpts.push_back(std::move(r));
    }
    if (!ch.quarantine.empty()) {
        txn_->hold_reason = ch.quarantine;
        LOG_INFO("event=milter_quarantine qid=%s client=%s reason=\"%s\"", qid.c_str(), client_.ip.c_str(),
                 log::safe(txn_->hold_reason).c_str());
    }
    if (ch.any())
        LOG_INFO("event=milter_modified qid=%s %s nrcpt=%zu", qid.c_str(), ch.summary().c_str(), txn_->rcpts.size());
    if (txn_->rcpts.empty()) txn_->milter_discard = "-";  // every recipient deleted: nothing to deliver
    return true;
}

// ---- milter::Owner

void Session::milter_socket(std::size_t index) { host_.milter_socket(id_, index, cfg_->smtpd_milters.at(index).spec); }

void Session::on_milter_socket(std::size_t index, UniqueFd fd) {
    if (milters_) milters_->socket_ready(index, std::move(fd));
}

void Session::on_milter_socket_failed(std::size_t index, const std::string& why) {
    if (milters_) milters_->socket_failed(index, why);
}

std::string Session::milter_log_context() const {
    std::string s = " client=" + client_.ip;
    if (txn_ && txn_->body) s += " qid=" + wire::format_qid(txn_->body->msgid);
    return s;
}

std::optional<std::string> Session::milter_macro(std::string_view n) const {
    auto some = [](std::string v) -> std::optional<std::string> {
        if (v.empty()) return std::nullopt;
        return v;
    };
    if (n == "j") return cfg_->hostname;
    if (n == "_") return "unknown [" + client_.ip + "]";
    if (n == "v") return std::string("mta ") + version();
    if (n == "{daemon_name}") return std::string(listen_kind_name(client_.kind));
    if (n == "{daemon_addr}") return local_addr_ ? some(numeric_ip(*local_addr_)) : std::nullopt;
    if (n == "{daemon_port}") return local_addr_ ? some(std::to_string(numeric_port(*local_addr_))) : std::nullopt;
    if (n == "{client_addr}") return client_.ip;
    if (n == "{client_port}") return std::to_string(numeric_port(client_.addr));
    if (n == "{client_name}" || n == "{client_ptr}") return std::string("unknown");
    if (n == "{tls_version}") return tls_ ? some(tls_version_) : std::nullopt;
    if (n == "{cipher}") return tls_ ? some(tls_cipher_) : std::nullopt;
    if (n == "{cipher_bits}") return tls_ && tls_bits_ > 0 ? some(std::to_string(tls_bits_)) : std::nullopt;
    if (n == "{auth_type}") return auth_user_.empty() ? std::nullopt : some(auth_mech_);
    if (n == "{auth_authen}") return some(auth_user_);
    if (n == "{mail_addr}") return txn_ ? txn_->sender.str() : milter_sender_;
    if (n == "{mail_mailer}") return std::string("smtp");
    if (n == "{rcpt_addr}") return some(milter_rcpt_);
    if (n == "{rcpt_host}") return some(domain_of(milter_rcpt_));
    if (n == "{rcpt_mailer}") {
        if (milter_rcpt_.empty()) return std::nullopt;
        return std::string(cfg_->is_local_domain(domain_of(milter_rcpt_)) ? "local" : "smtp");
    }
    if (n == "i") return txn_ && txn_->body ? some(wire::format_qid(txn_->body->msgid)) : std::nullopt;
    return std::nullopt;
}

// ---- Server: sockets from mtad

void Server::milter_socket(uint64_t session_id, std::size_t index, const std::string& spec) {
    uint64_t reqid = next_milter_reqid_++;
    milter_waiting_[reqid] = {session_id, index};
    master_->send(wire::encode(wire::MilterConnect{index, spec}, reqid));
}

void Server::on_milter_socket(ipc::Message& m) {
    auto it = milter_waiting_.find(m.reqid);
    if (it == milter_waiting_.end()) malformed(Role::master, "milter_socket for no request");
    auto [sid, index] = it->second;
    milter_waiting_.erase(it);
    auto s = sessions_.find(sid);
    std::string err;
    if (m.type == ipc::Type::fail) {
        wire::Fail f;
        if (!wire::decode(m, f, err)) malformed(Role::master, "bad fail: " + err);
        if (s != sessions_.end()) s->second->on_milter_socket_failed(index, f.text);
        return;
    }
    wire::MilterSocket sock;
    if (!wire::decode(m, sock, err)) malformed(Role::master, "bad milter_socket: " + err);
    if (s != sessions_.end()) s->second->on_milter_socket(index, std::move(sock.fd));
}

}  // namespace mta::smtpd
