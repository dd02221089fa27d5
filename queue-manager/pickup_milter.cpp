// non_smtpd_milters: mail from sendmail(1) goes past the milters before it is queued, as Postfix's
// cleanup does for pickup. A milter sees a connection from localhost (127.0.0.1), HELO localhost, the
// envelope and the message; the sockets come from mtad as for mta-smtpd. Outcomes:
//   accepted     its changes (headers, body, sender, recipients, quarantine) are applied, then the
//                message goes on to mta-msgauth or the commit
//   rejected     the maildrop file moves to maildrop/bad/ with the milter's reply in the log (a
//                recipient refused at RCPT is dropped from the envelope; all of them: the same)
//   tempfailed   the file stays in maildrop/ and is tried again a minute later
//   discarded    the file is removed, nothing is queued
// A milter that is down, slow or broken gets milter_default_action: tempfail and reject as above,
// accept goes on without it.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <strings.h>

#include "common/address.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/wire/limits.h"
#include "common/wire/fields.h"
#include "queue-manager/pickup.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

constexpr uint64_t kTempfailRetry = 60;  // seconds before a tempfailed maildrop file is tried again

std::string reply_text(const milter::Verdict& v) {
    std::string t = std::to_string(v.code) + " " + v.enhanced;
    for (auto& l : v.text) t += " " + l;
    return t;
}

}  // namespace

struct Pickup::MilterJob final : milter::Owner {
    enum class Step { connect, helo, mail, rcpt, data, content };

    Pickup& pickup;
    Waiting w;
    std::unique_ptr<milter::Chain> chain;
    Step step = Step::connect;
    std::size_t rcpt = 0;              // the recipient being asked about
    std::vector<bool> refused;         // per recipient: a milter refused it at RCPT
    UniqueFd mem;                      // the message for the content step

    MilterJob(Pickup& p, Waiting wait) : pickup(p), w(std::move(wait)), refused(w.item.rcpts.size(), false) {}

    std::string qid() const { return format_qid(w.item.msgid); }

    void milter_socket(std::size_t index) override {
        if (pickup.ask_socket_) pickup.ask_socket_(w.item.msgid, index);
        else chain->socket_failed(index, "no link to mtad");  // never: the server sets it before any scan
    }
    std::optional<std::string> milter_macro(std::string_view n) const override {
        if (n == "j") return pickup.hostname_;
        if (n == "_") return std::string("localhost [127.0.0.1]");
        if (n == "{daemon_name}") return std::string("pickup");
        if (n == "{client_addr}" || n == "{daemon_addr}") return std::string("127.0.0.1");
        if (n == "{client_name}" || n == "{client_ptr}") return std::string("localhost");
        if (n == "i") return qid();
        if (n == "{mail_addr}") return w.item.msg.sender;
        if (n == "{mail_mailer}") return std::string("local");
        if (n == "{rcpt_addr}" && step == Step::rcpt && rcpt < w.item.rcpts.size()) return w.item.rcpts[rcpt].addr;
        return std::nullopt;
    }
    std::string milter_log_context() const override {
        return " qid=" + qid() + " file=" + log::safe(w.item.maildrop);
    }
    void milter_done(milter::Stage, const milter::Verdict& v) override {
        using K = milter::Verdict::Kind;
        if (v.kind == K::discard) {
            LOG_INFO("event=milter_discard qid=%s file=%s milter=%s", qid().c_str(), log::safe(w.item.maildrop).c_str(),
                     log::safe(v.milter).c_str());
            unlinkat(pickup.dir_fd_.get(), w.item.maildrop.c_str(), 0);
            pickup.busy_.erase(w.item.maildrop);
            return pickup.end_job(*this);
        }
        if (v.kind == K::reject && step == Step::rcpt && !v.failure) {
            LOG_INFO("event=milter_reject qid=%s rcpt=<%s> milter=%s reply=\"%s\"", qid().c_str(),
                     log::safe(w.item.rcpts[rcpt].addr).c_str(), log::safe(v.milter).c_str(),
                     log::safe(reply_text(v)).c_str());
            refused[rcpt] = true;
        } else if (v.kind != K::pass) {
            return pickup.milters_refused(*this, v);
        }
        next();
    }

    void next() {
        switch (step) {
        case Step::connect:
            step = Step::helo;
            return chain->helo("localhost");
        case Step::helo:
            step = Step::mail;
            return chain->mail({"<" + w.item.msg.sender + ">"});
        case Step::mail:
            step = Step::rcpt;
            rcpt = 0;
            break;
        case Step::rcpt:
            rcpt++;
            break;
        case Step::data:
            return content();
        case Step::content:
            return pickup.milters_passed(*this);
        }
        if (rcpt < w.item.rcpts.size()) return chain->rcpt({"<" + w.item.rcpts[rcpt].addr + ">"});
        if (std::all_of(refused.begin(), refused.end(), [](bool b) { return b; })) {
            milter::Verdict v;
            v.kind = milter::Verdict::Kind::reject;
            v.code = 550, v.enhanced = "5.7.1", v.text = {"every recipient refused by the milters"};
            return pickup.milters_refused(*this, v);
        }
        step = Step::data;
        chain->data();
    }

    void content() {
        step = Step::content;
        mem.reset(memfd_create("mta-message", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        if (!mem || !write_all(mem.get(), w.body)) {
            milter::Verdict v;
            v.kind = milter::Verdict::Kind::tempfail;
            v.code = 451, v.enhanced = "4.3.0", v.text = {std::string("memfd: ") + strerror(errno)};
            return pickup.milters_refused(*this, v);
        }
        chain->content(mem.get());
    }
};

// Here, where MilterJob is complete.
Pickup::Pickup(event_base* base, Store& store, int body_dir_fd, std::function<uint64_t()> now,
               std::function<void(CommitItem)> submit)
    : base_(base), store_(store), body_dir_fd_(body_dir_fd), now_(std::move(now)), submit_(std::move(submit)) {}

Pickup::~Pickup() = default;

void Pickup::start_milters(Waiting w) {
    uint64_t id = w.item.msgid;
    auto job = std::make_unique<MilterJob>(*this, std::move(w));
    job->chain = std::make_unique<milter::Chain>(base_, cfg_, cfg_->non_smtpd_milters, *job);
    MilterJob& j = *job;
    jobs_[id] = std::move(job);
    milter::ConnectInfo info{"localhost", milter::SMFIA_INET, 0, "127.0.0.1"};
    j.chain->start(std::move(info));
}

void Pickup::milter_socket(uint64_t token, std::size_t index, UniqueFd fd) {
    if (auto it = jobs_.find(token); it != jobs_.end()) it->second->chain->socket_ready(index, std::move(fd));
}

void Pickup::milter_socket_failed(uint64_t token, std::size_t index, const std::string& why) {
    if (auto it = jobs_.find(token); it != jobs_.end()) it->second->chain->socket_failed(index, why);
}

void Pickup::end_job(MilterJob& job) {
    auto it = jobs_.find(job.w.item.msgid);
    if (it == jobs_.end()) return;
    job.chain->quit();  // the milters hear of the end now, not at the next scan
    ended_.push_back(std::move(it->second));  // we may be inside its chain's callback
    jobs_.erase(it);
    if (!evtimer_pending(scan_ev_.get(), nullptr)) {
        struct timeval tv = {1, 0};
        evtimer_add(scan_ev_.get(), &tv);
    }
}

void Pickup::free_ended_jobs() { ended_.clear(); }

void Pickup::milters_refused(MilterJob& job, const milter::Verdict& v) {
    const std::string name = job.w.item.maildrop;
    const std::string qid = job.qid();
    LOG_WARN("event=milter_reject qid=%s file=%s milter=%s reply=\"%s\"%s", qid.c_str(), log::safe(name).c_str(),
             log::safe(v.milter.empty() ? "-" : v.milter).c_str(), log::safe(reply_text(v)).c_str(),
             v.failure ? " default_action=yes" : "");
    end_job(job);
    busy_.erase(name);
    if (v.kind == milter::Verdict::Kind::tempfail) {
        retry_at_[name] = now_() + kTempfailRetry;
        return;
    }
    reject(name, "milter " + (v.milter.empty() ? std::string("-") : v.milter) + ": " + reply_text(v));
}

// The milters let it through: their changes go into the message and the envelope.
void Pickup::milters_passed(MilterJob& job) {
    Waiting w = std::move(job.w);
    const milter::Changes& ch = job.chain->changes();
    const std::string qid = format_qid(w.item.msgid);
    end_job(job);
    if (job.chain->message().changed()) {
        std::string err;
        UniqueFd fd = job.chain->message().write(err);
        std::string body;
        if (fd) {
            off_t size = lseek(fd.get(), 0, SEEK_END);
            body.resize(size > 0 ? std::size_t(size) : 0);
            if (size < 0 || pread(fd.get(), body.data(), body.size(), 0) != ssize_t(body.size())) fd.reset();
        }
        if (!fd) {
            LOG_ERROR("event=maildrop_deferred qid=%s file=%s reason=\"writing the changed message: %s\"", qid.c_str(),
                      log::safe(w.item.maildrop).c_str(), err.empty() ? strerror(errno) : err.c_str());
            return put_back(w.item.maildrop);
        }
        w.body = std::move(body);
    }
    std::vector<RecipientRecord> kept;
    for (std::size_t i = 0; i < w.item.rcpts.size(); i++)
        if (!job.refused[i]) kept.push_back(std::move(w.item.rcpts[i]));
    if (ch.sender) {
        if (auto a = milter::parse_address(ch.sender->first, true)) w.item.msg.sender = a->str();
        else LOG_WARN("event=milter_bad_change qid=%s change=chgfrom address=\"%s\"", qid.c_str(), log::safe(ch.sender->first).c_str());
    }
    for (const std::string& d : ch.del_rcpts) {
        auto parsed = milter::parse_address(d, false);
        std::string want = parsed ? parsed->str() : d;
        std::erase_if(kept, [&](const RecipientRecord& r) { return strcasecmp(r.addr.c_str(), want.c_str()) == 0; });
    }
    for (const auto& [a, args] : ch.add_rcpts) {
        auto mailbox = milter::parse_address(a, false);
        if (!mailbox) {
            LOG_WARN("event=milter_bad_change qid=%s change=addrcpt address=\"%s\"", qid.c_str(), log::safe(a).c_str());
            continue;
        }
        std::string addr = mailbox->str();
        if (std::any_of(kept.begin(), kept.end(), [&](const RecipientRecord& r) { return r.addr == addr; })) continue;
        RecipientRecord r;
        r.addr = addr;
        kept.push_back(std::move(r));
    }
    if (!ch.quarantine.empty()) {
        w.item.msg.hold_reason = ch.quarantine;
        LOG_INFO("event=milter_quarantine qid=%s file=%s reason=\"%s\"", qid.c_str(), log::safe(w.item.maildrop).c_str(),
                 log::safe(w.item.msg.hold_reason).c_str());
    }
    if (ch.any())
        LOG_INFO("event=milter_modified qid=%s %s nrcpt=%zu", qid.c_str(), ch.summary().c_str(), kept.size());
    if (kept.empty()) {
        LOG_INFO("event=milter_discard qid=%s file=%s reason=\"no recipients left\"", qid.c_str(),
                 log::safe(w.item.maildrop).c_str());
        unlinkat(dir_fd_.get(), w.item.maildrop.c_str(), 0);
        busy_.erase(w.item.maildrop);
        return;
    }
    w.item.rcpts = std::move(kept);
    w.item.msg.nrcpt = uint32_t(w.item.rcpts.size());
    after_milters(std::move(w));
}

}  // namespace mta::queue
