// The mta-msgauth process: msgauth_request from the mta-smtpd processes (SMTP mail) and from mta-queue
// (mail picked up from sendmail's maildrop), one Job per message, its DNS
// questions to mta-resolver over our link, the reply when the job is done. Validates every message
// from its clients, the master and the resolver; a message body that is not a sealed memfd is a protocol
// violation. Holds the DKIM private keys, loaded by main() before the privilege drop.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/config.h"
#include "common/dns_link.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/ipc.h"
#include "common/role.h"
#include "msgauth/dmarc_record.h"
#include "msgauth/msgauth_job.h"
#include "msgauth/signing_keys.h"

namespace mta::msgauth {

class Server final : public daemon::MasterHandler {
public:
    Server(event_base* base, Config cfg, SigningKeys keys, PublicSuffixList psl, UniqueFd master);

private:
    using Client = std::pair<Role, uint64_t>;  // smtpd or queue, and its instance
    struct Pending {
        Client client;
        uint64_t reqid = 0;
        uint64_t msgid = 0;
        bool trusted = false;
        std::string client_addr;
        std::unique_ptr<Job> job;
    };

    void on_peer(Role role, uint64_t instance, UniqueFd fd) override;
    void on_reload(Config next, const wire::Config& conf) override;
    void on_stop() override;

    void on_client_message(Client c, ipc::Message& m);
    void on_client_closed(Client c, bool malformed, const std::string& why);
    bool read_body(int fd, std::string& out, bool& sealed, std::string& err) const;
    void pump(uint64_t id);
    void finish(uint64_t id);
    void send(Client c, ipc::Message m);
    void exit_when_idle();
    JobSettings settings() const;

    event_base* base_;
    Config cfg_;
    SigningKeys keys_;
    PublicSuffixList psl_;
    daemon::Reaper reaper_;
    DnsLink dns_;
    std::map<Client, std::unique_ptr<ipc::Link>> clients_;
    std::map<uint64_t, Pending> jobs_;
    uint64_t next_job_ = 1;
    bool leaving_ = false;  // stop, or new keys to load: answer what is in flight, then exit
    std::unique_ptr<daemon::MasterLink> master_;
};

}  // namespace mta::msgauth
