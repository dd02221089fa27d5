// Per-recipient local delivery: local part -> maildir_name() -> Maildir write, one copy per mailbox
// per request, one log line per recipient. Recipients come from a validated DeliverRequest.
#include "smtp-client/local/local_agent.h"

#include <map>

#include "common/log.h"
#include "common/mailbox_name.h"

namespace mta::local {

Agent::Agent(int root_fd, std::string hostname, uint64_t pid, Now now)
    : root_fd_(root_fd), host_(maildir_hostname(hostname)), pid_(pid), now_(std::move(now)) {}

void Agent::set_hostname(const std::string& hostname) { host_ = maildir_hostname(hostname); }

std::string Agent::next_unique() {
    Clock c = now_();
    return maildir_unique(c.secs, c.usecs, pid_, ++counter_, host_);
}

// Return-Path (RFC 5321 §4.4) first, then Delivered-To with the final recipient, as Postfix's local(8).
Outcome Agent::deliver_to(const DeliverRequest& req, const std::string& mailbox, const std::string& rcpt) {
    MaildirWrite w;
    w.root_fd = root_fd_;
    w.mailbox = mailbox;
    w.header = "Return-Path: <" + req.sender + ">\nDelivered-To: " + rcpt + "\n";
    w.body_fd = req.body.get();
    w.unique = next_unique();
    return write_maildir(w);
}

std::vector<RcptResult> Agent::deliver(const DeliverRequest& req) {
    const std::string qid = qid_text(req.msgid);
    std::map<std::string, Outcome> done;  // mailbox -> outcome: a mailbox listed twice gets one copy
    std::vector<RcptResult> results;
    results.reserve(req.rcpts.size());
    for (const Recipient& r : req.rcpts) {
        RcptResult res{r.index, {}};
        auto local = recipient_local_part(r.address);
        auto mailbox = local ? maildir_name(*local) : std::nullopt;
        bool duplicate = false;
        if (!local) {
            res.outcome = {ipc::DeliveryStatus::bounced, "5.1.3 bad recipient address syntax", {}};
        } else if (!mailbox) {
            res.outcome = {ipc::DeliveryStatus::bounced, "5.1.1 unsafe mailbox name", {}};
        } else if (auto it = done.find(*mailbox); it != done.end()) {
            res.outcome = it->second;
            duplicate = true;
        } else {
            res.outcome = deliver_to(req, *mailbox, r.address);
            done.emplace(*mailbox, res.outcome);
        }
        const std::string to = log::safe(r.address);
        if (res.outcome.status == ipc::DeliveryStatus::delivered)
            LOG_INFO("event=delivered qid=%s to=<%s> maildir=%s%s", qid.c_str(), to.c_str(),
                     res.outcome.file.c_str(), duplicate ? " duplicate=yes" : "");
        else
            LOG_INFO("event=%s qid=%s to=<%s> reason=\"%s\"",
                     res.outcome.status == ipc::DeliveryStatus::bounced ? "bounced" : "deferred", qid.c_str(),
                     to.c_str(), log::safe(res.outcome.text).c_str());
        results.push_back(std::move(res));
    }
    return results;
}

}  // namespace mta::local
