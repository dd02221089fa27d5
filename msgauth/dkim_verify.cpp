// DKIM verification step machine (see dkim_verify.h).
#include "msgauth/dkim_verify.h"

#include <algorithm>

#include "common/address.h"

namespace mta::msgauth {

struct DkimVerifier::Body {
    BodyCanonicalizer canon;
    Sha256 hash;
    std::string digest;
    Body(DkimCanon c, std::optional<uint64_t> l) : canon(c, l) {}
};

struct DkimVerifier::Sig {
    DkimSignature sig;
    DkimVerdict verdict;
    bool decided = false;
    Body* body = nullptr;
    std::string header_digest;
    std::string key_name;  // SELECTOR._domainkey.DOMAIN

    void decide(AuthResult r, std::string why) {
        verdict.result = r;
        verdict.reason = std::move(why);
        decided = true;
    }
};

DkimVerifier::DkimVerifier(const std::vector<HeaderField>& fields, std::size_t max_signatures, uint64_t now) {
    for (const HeaderField& f : fields) {
        if (!iequals(f.name, "DKIM-Signature")) continue;
        if (sigs_.size() == max_signatures) {
            ignored_++;
            continue;
        }
        auto s = std::make_unique<Sig>();
        std::string err;
        if (!parse_dkim_signature(f.value(), s->sig, err)) {
            s->decide(AuthResult::permerror, "bad signature: " + err);
            sigs_.push_back(std::move(s));
            continue;
        }
        const DkimSignature& sig = s->sig;
        s->verdict.domain = sig.domain;
        s->verdict.selector = sig.selector;
        s->verdict.identity = sig.identity;
        s->verdict.algorithm = algorithm_name(sig.algorithm);
        s->verdict.b_prefix = sig.b_text.substr(0, 8);
        s->key_name = sig.selector + "._domainkey." + sig.domain;
        if (sig.algorithm == DkimAlgorithm::rsa_sha1) {
            s->decide(AuthResult::fail, "rsa-sha1 is not accepted (RFC 8301)");
        } else if (sig.expiration && now > *sig.expiration) {
            s->decide(AuthResult::policy, "signature expired");
        } else {
            // The signature field with its b= value (and the whitespace around it) removed.
            std::string blanked = f.raw;
            blanked.erase(f.value_offset + sig.b_raw_begin, sig.b_raw_end - sig.b_raw_begin);
            s->header_digest = sha256(canonical_header_data(sig.header_canon, fields, sig.signed_headers, blanked));
            auto same = [&](const std::unique_ptr<Body>& b) {
                return b->canon.canon() == sig.body_canon && b->canon.limit() == sig.body_length.value_or(UINT64_MAX);
            };
            auto it = std::find_if(bodies_.begin(), bodies_.end(), same);
            if (it == bodies_.end())
                it = bodies_.insert(bodies_.end(), std::make_unique<Body>(sig.body_canon, sig.body_length));
            s->body = it->get();
        }
        sigs_.push_back(std::move(s));
    }
}

DkimVerifier::~DkimVerifier() = default;
DkimVerifier::DkimVerifier(DkimVerifier&&) noexcept = default;
DkimVerifier& DkimVerifier::operator=(DkimVerifier&&) noexcept = default;

void DkimVerifier::feed_body(std::string_view chunk) {
    for (auto& b : bodies_) {
        b->canon.feed(chunk, buf_);
        b->hash.update(buf_);
        buf_.clear();
    }
}

void DkimVerifier::finish_body() {
    if (body_done_) return;
    body_done_ = true;
    for (auto& b : bodies_) {
        b->canon.finish(buf_);
        b->hash.update(buf_);
        buf_.clear();
        b->digest = b->hash.final();
    }
    for (auto& s : sigs_) {
        if (s->decided) continue;
        const uint64_t size = s->body->canon.canonical_size();
        if (s->sig.body_length && *s->sig.body_length > size) {
            s->decide(AuthResult::permerror, "l= exceeds the body length");
        } else if (s->body->digest.empty() || s->body->digest != s->sig.body_hash) {
            s->decide(AuthResult::fail, "body hash did not verify");
        } else {
            s->verdict.body_length_limited = s->sig.body_length && *s->sig.body_length < size;
        }
    }
}

std::vector<DnsQuery> DkimVerifier::queries() const {
    std::vector<DnsQuery> out;
    if (!body_done_) return out;
    for (const auto& s : sigs_) {
        DnsQuery q{s->key_name, DnsType::txt};
        if (!s->decided && std::find(out.begin(), out.end(), q) == out.end()) out.push_back(q);
    }
    return out;
}

void DkimVerifier::answer(const DnsQuery& q, const DnsAnswer& a) {
    if (!body_done_ || q.type != DnsType::txt) return;
    for (auto& s : sigs_)
        if (!s->decided && s->key_name == q.name) check_key(*s, a);
}

void DkimVerifier::check_key(Sig& s, const DnsAnswer& a) {
    if (a.status == DnsAnswer::Status::error) return s.decide(AuthResult::temperror, "key lookup failed");
    if (a.records.empty()) return s.decide(AuthResult::permerror, "no key for signature");
    // More than one record is a publishing error; the first one that is a key record is used.
    DkimKey key;
    std::string err, first_err;
    bool parsed = false;
    for (const std::string& r : a.records) {
        if (parse_dkim_key(r, key, err)) {
            parsed = true;
            break;
        }
        if (first_err.empty()) first_err = err;
    }
    if (!parsed) return s.decide(AuthResult::permerror, "bad key record: " + first_err);
    if (key.revoked) return s.decide(AuthResult::permerror, "key revoked");
    const bool want_rsa = s.sig.algorithm == DkimAlgorithm::rsa_sha256;
    if ((key.type == DkimKeyType::rsa) != want_rsa)
        return s.decide(AuthResult::permerror, "key type does not match a=");
    if (!key.sha256_allowed) return s.decide(AuthResult::permerror, "key h= does not allow sha256");
    if (!key.email_service) return s.decide(AuthResult::permerror, "key is not for email (s=)");
    if (key.strict_identity) {
        std::size_t at = s.sig.identity.rfind('@');
        if (addr::lower(std::string_view(s.sig.identity).substr(at + 1)) != s.sig.domain)
            return s.decide(AuthResult::permerror, "key t=s and i= is a subdomain of d=");
    }
    s.verdict.testing = key.testing;
    DkimPublicKey pub;
    if (!load_public_key(key, pub, err)) return s.decide(AuthResult::permerror, "unusable key: " + err);
    if (pub.type == DkimKeyType::rsa && pub.bits < kMinRsaBits)
        return s.decide(AuthResult::fail, "RSA key of " + std::to_string(pub.bits) + " bits (RFC 8301)");
    if (!verify_digest(pub, s.header_digest, s.sig.signature))
        return s.decide(AuthResult::fail, "signature did not verify");
    s.decide(AuthResult::pass, "");
}

bool DkimVerifier::done() const {
    return body_done_ && std::all_of(sigs_.begin(), sigs_.end(), [](const auto& s) { return s->decided; });
}

std::vector<DkimVerdict> DkimVerifier::results() const {
    std::vector<DkimVerdict> out;
    for (const auto& s : sigs_) {
        out.push_back(s->verdict);
        if (!s->decided) {
            out.back().result = AuthResult::temperror;
            out.back().reason = "verification not finished";
        }
    }
    if (out.empty()) out.push_back(DkimVerdict{AuthResult::none, "no signature", {}, {}, {}, {}, {}, false, false});
    return out;
}

std::vector<DkimVerdict> dkim_verify_message(std::string_view message, std::size_t max_signatures, uint64_t now,
                                             const std::vector<std::pair<std::string, DnsAnswer>>& keys) {
    HeaderSection hs;
    std::string err;
    if (!parse_header_section(message, hs, err))
        return {DkimVerdict{AuthResult::permerror, err, {}, {}, {}, {}, {}, false, false}};
    DkimVerifier v(hs.fields, max_signatures, now);
    v.feed_body(message.substr(hs.body_offset));
    v.finish_body();
    for (const DnsQuery& q : v.queries()) {
        auto it = std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k.first == q.name; });
        v.answer(q, it != keys.end() ? it->second : DnsAnswer{DnsAnswer::Status::nxdomain, {}});
    }
    return v.results();
}

}  // namespace mta::msgauth
