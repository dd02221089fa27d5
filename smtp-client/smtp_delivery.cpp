// Delivery: drives one `deliver` request through destination choice, the connection cache or DNS and
// connection attempts, and the SMTP transaction; every recipient ends with a status and a text.
#include "smtp-client/smtp_delivery.h"

#include "common/log.h"
#include "smtp-client/smtp_body.h"

namespace mta::smtp {

using ipc::DeliveryStatus;

void Delivery::start() {
    if (is_lmtp_nexthop(job_.nexthop)) {
        start_lmtp();
        return;
    }
    std::string err;
    auto d = choose_destination(job_.nexthop, env_.cfg->relayhost, env_.cfg->smtp_port, err);
    if (!d) {
        // A bad relayhost is our configuration (wait for a fix); a bad recipient domain will never work.
        if (err.rfind("relayhost", 0) == 0 || err.rfind("transport_map", 0) == 0)
            finish(DeliveryStatus::deferred, "4.3.5 mail transport unavailable: " + err);
        else finish(DeliveryStatus::bounced, "5.1.2 bad destination domain: " + err);
        return;
    }
    dest_ = *d;
    // smtp_tls_policy_map's level for this destination (sent by the queue) wins over smtp_tls_level.
    if (!job_.tls_level.empty() && !parse_tls_level(job_.tls_level, level_)) {
        finish(DeliveryStatus::deferred, "4.3.5 unknown TLS level \"" + job_.tls_level + "\" from smtp_tls_policy_map");
        return;
    }
    if (job_.tls_level.empty()) parse_tls_level(env_.cfg->smtp_tls_level, level_);  // validated by the config parser
    if (!env_.tls && level_ != TlsLevel::none && level_ != TlsLevel::may) {
        finish(DeliveryStatus::deferred, "4.7.5 TLS is required (smtp_tls_level=" + std::string(tls_level_name(level_)) +
                                             ") but the TLS client context is unavailable");
        return;
    }
    if (job_.requiretls && level_ != TlsLevel::dane && level_ != TlsLevel::mta_sts) {
        // RFC 8689 §5: only DANE or MTA-STS can verify the next hop; no level here could.
        finish(DeliveryStatus::bounced, "5.7.30 REQUIRETLS support required: TLS level " +
                                            std::string(tls_level_name(level_)) + " for " + dest_.host +
                                            " cannot verify the server (needs dane or mta-sts)");
        return;
    }
    // The source address and EHLO name are part of a cached connection's identity: after a reload that
    // changes them, no connection made with the old ones is reused.
    cache_key_ = dest_.key() + "/" + tls_level_name(level_) + "/";
    if (!job_.source_address.empty()) cache_key_.append(job_.source_address).append("/").append(job_.source_helo);
    else cache_key_.append(env_.cfg->smtp_bind_address).append("/").append(env_.cfg->smtp_bind_address6).append("/").append(env_.cfg->smtp_helo_name);
    // REQUIRETLS mail decides TLS afresh (policy lookup, verification) instead of reusing a connection.
    if (!job_.requiretls) {
        if (auto s = env_.cache->take(cache_key_)) {
            session_ = std::move(s);
            relay_ = session_->target().label();
            run(true);
            return;
        }
    }
    if (sts_applies()) {
        lookup_sts();  // the recipient domain's own MX set (not a relayhost or transport_map host)
        return;
    }
    resolve();
}

void Delivery::start_lmtp() {
    // Final delivery to a local LMTP server: no DNS, no TLS, REQUIRETLS does not apply (RFC 8689 §5).
    Target t;
    std::string err;
    if (!parse_lmtp_nexthop(job_.nexthop, t, err)) {
        finish(DeliveryStatus::deferred, "4.3.5 mail transport unavailable: " + err);
        return;
    }
    lmtp_ = true;
    level_ = TlsLevel::none;
    cache_key_ = job_.nexthop;
    targets_ = {t};
    next_target_ = 0;
    if (auto s = env_.cache->take(cache_key_)) {
        session_ = std::move(s);
        relay_ = session_->target().label();
        run(true);
        return;
    }
    try_next();
}

void Delivery::resolve() {
    bool needs_dns = dest_.mx || !is_ip_literal(dest_.host);
    if (needs_dns && !env_.dns->available()) {
        finish(DeliveryStatus::deferred, "4.4.3 resolver unavailable");
        return;
    }
    resolver_ = std::make_unique<TargetResolver>(*env_.dns, *env_.cfg, env_.rng);
    resolver_->start(dest_, [this](TargetResult r) { on_targets(std::move(r)); });  // must stay last
}

void Delivery::on_targets(TargetResult r) {
    if (r.targets.empty()) {
        finish(r.status, r.text);
        return;
    }
    targets_ = std::move(r.targets);
    next_target_ = 0;
    // The recipient domain's own MX (not a relayhost's): the queue learns it for destination_policy's
    // "mx:" keys.
    if (own_mx()) job_.mx_host = targets_.front().host;
    try_next();
}

void Delivery::try_next() {
    if (next_target_ >= targets_.size()) {
        if (!requiretls_error_.empty() && temp_failures_ == 0) {
            finish(DeliveryStatus::bounced, "5.7.30 REQUIRETLS support required: " + requiretls_error_);
            return;
        }
        bool coded = last_error_.size() > 2 && last_error_[0] == '4' && last_error_[1] == '.';
        finish(DeliveryStatus::deferred, coded ? last_error_ : "4.4.1 " + last_error_);
        return;
    }
    const Target& t = targets_[next_target_++];
    relay_ = t.label();
    if (!lmtp_ && !job_.source_address.empty() &&
        (t.sa.ss_family == AF_INET6) != (job_.source_address.find(':') != std::string::npos)) {
        // A source address connects to targets of its own family only.
        if (last_error_.empty())
            last_error_ = "4.4.4 no " + std::string(t.sa.ss_family == AF_INET6 ? "IPv4" : "IPv6") + " address of " +
                          dest_.host + " to reach from source address " + job_.source_address;
        LOG_DEBUG("event=target_skipped qid=%s relay=%s reason=\"other address family than source %s\"",
                  job_.qid().c_str(), relay_.c_str(), job_.source_address.c_str());
        try_next();
        return;
    }
    bool dane_level = level_ == TlsLevel::dane || level_ == TlsLevel::mta_sts;  // RFC 8461 §2: DANE wins
    if (level_ == TlsLevel::mta_sts && !t.dnssec_secure) {
        apply_sts(t);
        return;
    }
    if (!dane_level || !t.dnssec_secure) {
        // DANE applies only where the MX and address answers were DNSSEC-validated; elsewhere "dane"
        // means opportunistic TLS (RFC 7672 §2.2).
        SessionSettings s = settings();
        s.level = level_ == TlsLevel::dane ? TlsLevel::may : level_;
        connect(t, std::move(s));
        return;
    }
    auto known = dane_.find(t.host);
    if (known != dane_.end()) {
        on_tlsa(t, known->second);
        return;
    }
    std::weak_ptr<bool> alive = alive_;
    Target copy = t;
    env_.dns->query(tlsa_name(t.host, t.port), kQtypeTlsa, [this, alive, copy](const DnsAnswer& a) {
        if (!alive.lock()) return;
        DaneDecision d = decide_dane(a);
        dane_[copy.host] = d;
        on_tlsa(copy, d);
    });
}

void Delivery::on_tlsa(const Target& t, const DaneDecision& d) {
    SessionSettings s = settings();
    switch (d.kind) {
    case DaneDecision::skip:
        LOG_INFO("event=dane_skip qid=%s relay=%s reason=\"%s\"", job_.qid().c_str(), relay_.c_str(),
                 log::safe(d.why).c_str());
        temp_failures_++;
        last_error_ = "4.7.5 " + d.why + " for " + t.host;
        try_next();
        return;
    case DaneDecision::may:
        if (level_ == TlsLevel::mta_sts) {
            apply_sts(t);
            return;
        }
        break;
    case DaneDecision::encrypt: s.level = TlsLevel::encrypt; break;
    case DaneDecision::dane:
        s.level = TlsLevel::dane;
        s.tlsa = d.records;
        s.names = {t.host};
        if (dest_.mx && dest_.host != t.host) s.names.push_back(dest_.host);
        break;
    }
    LOG_DEBUG("event=tls_policy qid=%s relay=%s level=%s tlsa=%zu", job_.qid().c_str(), relay_.c_str(),
              tls_level_name(s.level), s.tlsa.size());
    connect(t, std::move(s));
}

SessionSettings Delivery::settings() const {
    SessionSettings s;
    s.helo_name = !job_.source_helo.empty()          ? job_.source_helo
                  : !env_.cfg->smtp_helo_name.empty() ? env_.cfg->smtp_helo_name
                                                      : env_.cfg->hostname;
    s.connect_timeout = int(std::min<uint64_t>(env_.cfg->smtp_connect_timeout, 3600));
    s.greeting_timeout = int(std::min<uint64_t>(env_.cfg->smtp_helo_timeout, 3600));
    s.tls = env_.tls;
    s.lmtp = lmtp_;
    return s;
}

void Delivery::connect(const Target& t, SessionSettings settings) {
    if (job_.requiretls && !lmtp_ && settings.level != TlsLevel::dane && settings.level != TlsLevel::mta_sts) {
        refuse_for_requiretls(t.host + " cannot be verified by DANE or an MTA-STS enforce policy");
        return;
    }
    if (!lmtp_ && !job_.source_address.empty()) settings.bind_address = job_.source_address;  // try_next matched the family
    else if (!lmtp_) settings.bind_address = t.sa.ss_family == AF_INET6 ? env_.cfg->smtp_bind_address6 : env_.cfg->smtp_bind_address;
    session_ = std::make_unique<Session>(env_.base, t, std::move(settings));
    session_->open([this](bool ok, const std::string& err) { on_open(ok, err); });
}

void Delivery::on_open(bool ok, const std::string& err) {
    note_tls_result(ok);
    if (!ok) {
        temp_failures_++;
        LOG_INFO("event=connect_failed qid=%s relay=%s reason=\"%s\"", job_.qid().c_str(), relay_.c_str(),
                 log::safe(err).c_str());
        last_error_ = err;
        if (session_->may_retry_plain() && !job_.requiretls) {
            // Opportunistic TLS failed in the handshake: the same address once more, in plaintext.
            Target t = session_->target();
            LOG_INFO("event=tls_fallback qid=%s relay=%s reason=\"retrying without TLS\"", job_.qid().c_str(),
                     relay_.c_str());
            SessionSettings s = settings();
            s.level = TlsLevel::none;
            session_.reset();  // we are inside its callback: it returns without touching itself
            connect(t, std::move(s));
            return;
        }
        session_.reset();  // we are inside its callback: it returns without touching itself
        try_next();
        return;
    }
    run(false);
}

void Delivery::run(bool reused) {
    if (job_.requiretls && !lmtp_ && (!session_->tls_verified() || !session_->ext().requiretls)) {
        std::string host = session_->target().hostip();
        std::string why = session_->tls_verified() ? host + " does not offer REQUIRETLS"
                                                   : "TLS with " + host + " is not verified";
        release_session();  // fine for other mail
        refuse_for_requiretls(why);
        return;
    }
    const Extensions& ext = session_->ext();
    std::string refusal = content_refusal(job_, ext.smtputf8, ext.eightbitmime, session_->target().hostip(),
                                          [this] { return body_has_8bit(job_.body.get()); });
    if (refusal.empty() && ext.size) refusal = size_refusal(job_.message_size(), ext.size_limit, session_->target().hostip());
    if (!refusal.empty()) {
        release_session();  // fine for other mail
        finish(DeliveryStatus::bounced, refusal);
        return;
    }
    sessions_++;
    session_->transact(job_, [this, reused](TxOutcome o) { on_tx(std::move(o), reused); });
}

void Delivery::on_tx(TxOutcome o, bool reused) {
    if (!o.error.empty()) {
        session_.reset();
        if (reused && o.nothing_received) {
            // The cached connection died while idle (server timeout): nothing was sent, start afresh.
            LOG_DEBUG("event=cache_stale qid=%s relay=%s", job_.qid().c_str(), relay_.c_str());
            if (lmtp_) {
                next_target_ = 0;
                try_next();
            } else if (sts_applies()) {
                lookup_sts();  // the policy was not looked up for the cached connection
            } else {
                resolve();
            }
            return;
        }
        bool coded = o.error.size() > 2 && o.error[1] == '.' && (o.error[0] == '4' || o.error[0] == '5');
        std::string text = coded ? o.error : "4.4.2 " + o.error;
        if (next_host_after_soft_failure(text)) return;
        finish(DeliveryStatus::deferred, text);
        return;
    }
    if (o.usable) release_session();
    else session_.reset();
    if (next_host_after_soft_failure("")) return;
    finish(DeliveryStatus::deferred, "4.4.2 protocol error: no reply for this recipient");
}

bool Delivery::next_host_after_soft_failure(const std::string& error) {
    // Like Postfix's smtp_bulk_fail/smtp_rcpt_fail: a temporary failure from a host that is not the last
    // one (a 4xx to MAIL, RCPT, DATA or the dot, a lost connection) leaves the recipients for the next.
    if (next_target_ >= targets_.size() || sessions_ >= kMaxSessionsPerAttempt) return false;
    std::size_t reopened = 0;
    for (auto& r : job_.rcpts) {
        if (r.final && r.status != DeliveryStatus::deferred) continue;
        if (r.final) last_error_ = r.text;
        r.final = false;
        reopened++;
    }
    if (reopened == 0) return false;
    if (!error.empty()) last_error_ = error;
    temp_failures_++;
    LOG_INFO("event=next_host qid=%s relay=%s recipients=%zu reason=\"%s\"", job_.qid().c_str(), relay_.c_str(),
             reopened, log::safe(last_error_).c_str());
    session_.reset();
    try_next();
    return true;
}

// destination_policy max_per_connection: a connection that has carried that many transactions says QUIT
// instead of waiting for the next message.
void Delivery::release_session() {
    if (job_.max_per_connection && session_ && session_->transactions() >= job_.max_per_connection)
        return env_.cache->retire(std::move(session_));
    env_.cache->put(cache_key_, std::move(session_));
}

void Delivery::finish(DeliveryStatus st, const std::string& text) {
    job_.settle_rest(st, text);
    complete();
}

void Delivery::log_results() const {
    for (auto& r : job_.rcpts) {
        const char* ev = r.status == DeliveryStatus::delivered ? "delivered"
                         : r.status == DeliveryStatus::bounced ? "bounced" : "deferred";
        LOG_INFO("event=%s qid=%s to=<%s> relay=%s reply=\"%s\"", ev, job_.qid().c_str(), log::safe(r.addr).c_str(),
                 relay_.empty() ? "none" : relay_.c_str(), log::safe(r.text).c_str());
    }
}

void Delivery::complete() {
    if (attach_tls_report()) return;  // back here once the _smtp._tls record is known
    log_results();
    auto cb = std::move(done_);
    cb(*this);  // may destroy *this
}

}  // namespace mta::smtp
