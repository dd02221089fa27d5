// DKIM verification (RFC 6376 §6, RFC 8301, RFC 8463) as a step machine: the caller streams the body,
// then answers the key queries it asks for. Everything in the message and in DNS is untrusted.
//
// Results (RFC 8601 names): pass; fail = the body hash or signature does not verify, or RFC 8301
// refuses it (rsa-sha1, RSA key under 1024 bits); policy = verifiable but expired (x=);
// permerror = a malformed signature, no key, a revoked/unusable/mismatched key, l= past the body;
// temperror = the key lookup failed; none = no signature at all.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "msgauth/dkim_canon.h"
#include "msgauth/dkim_crypto.h"
#include "msgauth/dns.h"
#include "msgauth/result.h"

namespace mta::msgauth {

struct DkimVerdict {
    AuthResult result = AuthResult::none;
    std::string reason;          // for the Authentication-Results comment; "" on pass
    std::string domain;          // header.d  (empty when the signature did not parse that far)
    std::string selector;        // header.s
    std::string identity;        // header.i
    std::string algorithm;       // header.a
    std::string b_prefix;        // header.b: the first 8 characters of b= (RFC 6008)
    bool body_length_limited = false;  // l= left part of the body unsigned
    bool testing = false;        // the key has t=y
};

class DkimVerifier {
public:
    // Looks at the first `max_signatures` DKIM-Signature fields from the top; `now` is for x=.
    // `fields` is only read during construction.
    DkimVerifier(const std::vector<HeaderField>& fields, std::size_t max_signatures, uint64_t now);
    ~DkimVerifier();
    DkimVerifier(DkimVerifier&&) noexcept;
    DkimVerifier& operator=(DkimVerifier&&) noexcept;

    void feed_body(std::string_view chunk);
    void finish_body();  // checks the body hashes; no key is asked for a signature whose body hash fails

    // After finish_body: the key queries not answered yet (distinct TXT names; all can be in flight).
    std::vector<DnsQuery> queries() const;
    void answer(const DnsQuery& q, const DnsAnswer& a);
    bool done() const;

    // One verdict per examined signature, in header order; a single `none` if there was none.
    std::vector<DkimVerdict> results() const;
    std::size_t ignored_signatures() const { return ignored_; }  // past max_signatures

private:
    struct Sig;
    struct Body;
    void check_key(Sig& s, const DnsAnswer& a);

    std::vector<std::unique_ptr<Sig>> sigs_;
    std::vector<std::unique_ptr<Body>> bodies_;  // one per distinct (canonicalization, l=)
    std::size_t ignored_ = 0;
    bool body_done_ = false;
    std::string buf_;
};

// Whole message in memory with the keys looked up synchronously from `keys` (name -> TXT answer):
// for tests and the offline `mtadkim verify`, never for the daemon.
std::vector<DkimVerdict> dkim_verify_message(std::string_view message, std::size_t max_signatures, uint64_t now,
                                             const std::vector<std::pair<std::string, DnsAnswer>>& keys);

}  // namespace mta::msgauth
