// DNS answers as the roles see them, the DnsClient interface their code is written against (a fake in
// tests), and DnsLink: the DnsClient over the IPC link to mta-resolver. It matches replies to requests
// by request id, answers everything pending with a failure when the link goes away, and bounds how long
// a query may wait. Used by mta-smtp and mta-msgauth.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/event_ptr.h"
#include "common/ipc.h"

namespace mta {

// resolve_reply rcodes: the DNS RCODE, or kRcodeTimeout for "no answer" (timeout, resolver down).
inline constexpr uint64_t kRcodeNoError = 0, kRcodeServfail = 2, kRcodeNxdomain = 3, kRcodeTimeout = 65535;

struct DnsAnswer {
    uint64_t rcode = kRcodeTimeout;
    uint64_t dnssec = 0;  // ipc::DnssecStatus
    std::string text;
    std::vector<std::string> records;
};

class DnsClient {
public:
    using Callback = std::function<void(const DnsAnswer&)>;
    virtual ~DnsClient() = default;
    // Calls cb exactly once, later (never from inside query() itself: callers rely on that).
    virtual void query(const std::string& name, uint16_t qtype, Callback cb) = 0;
    // False when there is no resolver to ask (queries would all fail at once).
    virtual bool available() const = 0;
};

inline constexpr int kDnsQueryTimeout = 30;  // the resolver promises an answer in ~10 s

class DnsLink : public DnsClient {
public:
    explicit DnsLink(event_base* base);
    ~DnsLink() override;
    DnsLink(const DnsLink&) = delete;
    DnsLink& operator=(const DnsLink&) = delete;

    // Take a new link to the resolver (replacing any old one: its pending queries fail).
    void attach(std::unique_ptr<ipc::Link> link);
    // A message from the resolver link. False if it is malformed (the caller exits).
    bool on_message(ipc::Message& m);
    // The link closed.
    void on_close();

    void query(const std::string& name, uint16_t qtype, Callback cb) override;
    bool available() const override { return link_ && link_->open(); }
    std::size_t pending() const { return pending_.size(); }

private:
    struct Pending {
        Callback cb;
        time_t deadline;
    };
    static void on_kick(int, short, void*);
    static void on_sweep(int, short, void*);
    void answer_later(Callback cb, DnsAnswer a);
    void fail_all(const std::string& why);

    event_base* base_;
    std::unique_ptr<ipc::Link> link_;
    std::map<uint64_t, Pending> pending_;
    uint64_t next_id_ = 1;
    std::deque<std::pair<Callback, DnsAnswer>> ready_;  // answers to deliver on the next loop turn
    EventPtr kick_;
    EventPtr sweep_;
};

}  // namespace mta
