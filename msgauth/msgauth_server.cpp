// mta-msgauth's links and jobs (see msgauth_server.h).
#include "msgauth/msgauth_server.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/log.h"
#include "common/wire/wire.h"

namespace mta::msgauth {
namespace {

unsigned random_percent() {
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != ssize_t(sizeof r)) r = uint32_t(time(nullptr));
    return r % 100;
}

}  // namespace

Server::Server(event_base* base, Config cfg, SigningKeys keys, PublicSuffixList psl, UniqueFd master)
    : base_(base), cfg_(std::move(cfg)), keys_(std::move(keys)), psl_(std::move(psl)),
      reaper_(base, [this] { exit_when_idle(); }), dns_(base) {
    master_ = std::make_unique<daemon::MasterLink>(base_, Role::msgauth, std::move(master), *this);
}

JobSettings Server::settings() const {
    return {cfg_.hostname, cfg_.msgauth_verify, std::size_t(cfg_.dkim_max_signatures), cfg_.spf_action == "reject_fail",
            cfg_.dmarc_action == "enforce"};
}

void Server::on_peer(Role role, uint64_t instance, UniqueFd fd) {
    if (role == Role::resolver) {
        dns_.attach(std::make_unique<ipc::Link>(
            base_, std::move(fd), Role::msgauth, role_name(Role::resolver),
            [this](ipc::Message& m) {
                if (!dns_.on_message(m)) daemon::malformed(Role::resolver, std::string("bad ") + ipc::type_name(m.type));
            },
            [this](bool malformed, const std::string& why) {
                if (malformed) daemon::malformed(Role::resolver, why);
                dns_.on_close();
            }));
        return;
    }
    if (role != Role::smtpd && role != Role::queue)
        daemon::malformed(Role::master, std::string("peer of unexpected role ") + role_name(role));
    Client c{role, instance};
    auto link = std::make_unique<ipc::Link>(
        base_, std::move(fd), Role::msgauth, role_name(role), [this, c](ipc::Message& m) { on_client_message(c, m); },
        [this, c](bool malformed, const std::string& why) { on_client_closed(c, malformed, why); });
    if (auto old = clients_.find(c); old != clients_.end()) reaper_.bury(std::move(old->second));
    clients_[c] = std::move(link);
}

void Server::on_client_closed(Client c, bool malformed, const std::string& why) {
    if (malformed) daemon::malformed(c.first, why);
    LOG_INFO("event=peer_closed role=%s instance=%llu reason=\"%s\"", role_name(c.first), (unsigned long long)c.second,
             log::safe(why).c_str());
    auto it = clients_.find(c);
    if (it == clients_.end()) return;
    reaper_.bury(std::move(it->second));
    clients_.erase(it);
    // Its jobs run on: their answers are dropped (send() finds no link), and they end within DNS timeouts.
}

// The memfd the client filled and sealed; read whole (the checks need the header section and one pass
// over the body, and the size is bounded by message_size_limit).
// A body that is too large (message_size_limit was lowered by a reload in between) or cannot be read
// is answered with a tempfail; a descriptor that is not sealed is a protocol violation (`sealed` false).
bool Server::read_body(int fd, std::string& out, bool& sealed, std::string& err) const {
    int seals = fcntl(fd, F_GET_SEALS);
    struct stat st {};
    sealed = seals >= 0 && (seals & wire::kMsgauthBodySeals) == wire::kMsgauthBodySeals && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!sealed) {
        err = "body fd is not a sealed memfd";
        return false;
    }
    if (uint64_t(st.st_size) > cfg_.message_size_limit + (1u << 20)) {
        err = "message larger than message_size_limit";
        return false;
    }
    out.resize(std::size_t(st.st_size));
    for (std::size_t off = 0; off < out.size();) {
        ssize_t n = pread(fd, out.data() + off, out.size() - off, off_t(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            err = std::string("read body: ") + (n < 0 ? strerror(errno) : "short");
            return false;
        }
        off += std::size_t(n);
    }
    return true;
}

void Server::on_client_message(Client c, ipc::Message& m) {
    wire::MsgauthRequest req;
    std::string err;
    if (!wire::decode(m, req, err)) daemon::malformed(c.first, "msgauth_request: " + err);
    std::string body;
    bool sealed = false;
    if (!read_body(req.body.get(), body, sealed, err)) {
        if (!sealed) daemon::malformed(c.first, err);
        LOG_ERROR("event=msgauth qid=%s action=tempfail reason=\"%s\"", wire::format_qid(req.msgid).c_str(),
                  log::safe(err).c_str());
        send(c, wire::encode(wire::MsgauthReply{ipc::MsgauthAction::tempfail, 451, "4.3.0",
                                                "Error: local problem, try again later", "", {}}, m.reqid));
        return;
    }
    req.body.reset();
    uint64_t id = next_job_++;
    Pending& p = jobs_[id];
    p.client = c;
    p.reqid = m.reqid;
    p.msgid = req.msgid;
    p.trusted = req.trusted;
    p.client_addr = req.client_addr;
    JobFacts facts{req.client_addr, req.client_helo, req.sender, req.auth_user, req.trusted};
    p.job = std::make_unique<Job>(settings(), keys_, psl_, std::move(facts), std::move(body), uint64_t(time(nullptr)),
                                  random_percent());
    pump(id);
}

// Asks what the job wants to know; each answer comes back from the loop (never inside query()).
void Server::pump(uint64_t id) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    Job& job = *it->second.job;
    if (job.done()) return finish(id);
    for (const DnsQuery& q : job.new_queries()) {
        dns_.query(q.name, qtype_number(q.type), [this, id, q](const mta::DnsAnswer& a) {
            auto j = jobs_.find(id);
            if (j == jobs_.end()) return;
            j->second.job->answer(q, DnsAnswer::from_resolver(a.rcode, a.dnssec == uint64_t(ipc::DnssecStatus::bogus),
                                                              a.records));
            pump(id);
        });
    }
}

void Server::finish(uint64_t id) {
    auto it = jobs_.find(id);
    Pending p = std::move(it->second);
    jobs_.erase(it);
    const wire::MsgauthReply& r = p.job->reply();
    LOG_INFO("event=msgauth qid=%s via=%s client=%s trusted=%s %s", wire::format_qid(p.msgid).c_str(),
             role_name(p.client.first), log::safe(p.client_addr).c_str(), p.trusted ? "yes" : "no",
             log::safe(p.job->summary()).c_str());
    send(p.client, wire::encode(r, p.reqid));
    if (leaving_) reaper_.poke();
}

void Server::send(Client c, ipc::Message m) {
    auto it = clients_.find(c);
    if (it != clients_.end() && it->second->open()) it->second->send(std::move(m));
}

// New keys can only be read as root, before the chroot: a changed dkim_keys setting or a rebuilt
// table makes this process finish its jobs and exit cleanly, and mtad starts a fresh one at once.
void Server::on_reload(Config next, const wire::Config&) {
    bool rekey = next.dkim_keys != cfg_.dkim_keys || next.msgauth_user != cfg_.msgauth_user;
    cfg_ = std::move(next);
    if (rekey || !cfg_.dkim_keys.empty()) {
        LOG_INFO("event=recycling reason=\"reload: DKIM keys are read again at start\"");
        leaving_ = true;
        reaper_.poke();
    }
}

void Server::on_stop() {
    LOG_INFO("event=stopping jobs=%zu", jobs_.size());
    leaving_ = true;
    reaper_.poke();
}

void Server::exit_when_idle() {
    if (!leaving_ || !jobs_.empty()) return;
    for (auto& [c, link] : clients_) link->drain();
    if (master_) master_->drain();
    exit(0);
}

}  // namespace mta::msgauth
