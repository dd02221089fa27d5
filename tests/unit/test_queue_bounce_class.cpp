// Unit tests for queue-manager/bounce_class: replies as large receivers send them, as mta-smtp reports
// them ("host[addr] said: CODE text (in reply to ...)"), and the queue's own diagnostics.
#include <doctest/doctest.h>

#include <string>

#include "queue-manager/bounce_class.h"

using namespace mta::queue;

namespace {
struct Case {
    const char* reply;
    bool permanent;
    BounceClass want;
};

std::string remote(const char* reply) {
    return std::string("mx.example.net[192.0.2.25] said: ") + reply + " (in reply to RCPT TO command)";
}
}  // namespace

TEST_CASE("remote replies land in the documented class") {
    const Case cases[] = {
        // Mailbox and domain
        {"550 5.1.1 The email account that you tried to reach does not exist.", true, BounceClass::bad_mailbox},
        {"550 5.5.0 Requested action not taken: mailbox unavailable", true, BounceClass::bad_mailbox},
        {"550 Requested action not taken: mailbox unavailable", true, BounceClass::bad_mailbox},
        {"550 <x@example.net>: Recipient address rejected: User unknown in local recipient table", true,
         BounceClass::bad_mailbox},
        {"550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", true,
         BounceClass::bad_mailbox},
        {"551 5.1.6 Recipient has moved", true, BounceClass::bad_mailbox},
        {"550 5.2.1 Mailbox disabled, not accepting messages", true, BounceClass::bad_mailbox},
        {"550 5.1.2 Bad destination system address", true, BounceClass::bad_domain},
        {"554 5.4.4 Unable to route", true, BounceClass::bad_domain},
        {"550 No such domain here", true, BounceClass::bad_domain},
        // Full, too big
        {"552 5.2.2 The email account that you tried to reach is over quota.", true, BounceClass::mailbox_full},
        {"452 4.2.2 Mailbox full", false, BounceClass::mailbox_full},
        {"452 Mailbox quota exceeded, try later", false, BounceClass::mailbox_full},
        {"552 5.3.4 Your message exceeded Google's message size limits.", true, BounceClass::message_too_big},
        {"552 5.2.3 Message length exceeds administrative limit", true, BounceClass::message_too_big},
        {"552 Message too large", true, BounceClass::message_too_big},
        // Policy
        {"550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus", true,
         BounceClass::policy_block},
        {"554 5.7.1 <x@example.net>: Relay access denied", true, BounceClass::policy_block},
        {"554 Transaction failed: spam message rejected", true, BounceClass::policy_block},
        {"554 5.7.9 Message not accepted for policy reasons", true, BounceClass::policy_block},
        // Rate limits, 4xx and 5xx
        {"421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail", false,
         BounceClass::rate_limited},
        {"450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional "
         "messages from being delivered", false, BounceClass::rate_limited},
        {"451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)", false,
         BounceClass::rate_limited},
        {"421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume", false,
         BounceClass::rate_limited},
        {"421 Too many concurrent SMTP connections; please try again later", false, BounceClass::rate_limited},
        {"550 5.7.1 Daily sending rate limit exceeded", true, BounceClass::rate_limited},
        // TLS and authentication
        {"530 5.7.0 Must issue a STARTTLS command first", true, BounceClass::tls_auth_required},
        {"550 5.7.26 This mail is unauthenticated, which poses a security risk", true,
         BounceClass::tls_auth_required},
        {"550 5.7.1 Unauthenticated email from example.org is not accepted due to domain's DMARC policy", true,
         BounceClass::tls_auth_required},
        {"535 5.7.8 Authentication credentials invalid", true, BounceClass::tls_auth_required},
        // Neither: the fallback by outcome; "too many recipients" is not a rate limit
        {"450 4.2.0 <x@example.net>: Recipient address rejected: Greylisted, see http://postgrey.example/",
         false, BounceClass::other_transient},
        {"452 4.5.3 Too many recipients", false, BounceClass::other_transient},
        {"451 4.3.0 Temporary lookup failure", false, BounceClass::other_transient},
        {"554 5.6.0 Message content rejected", true, BounceClass::other_permanent},
        {"500 syntax error", true, BounceClass::other_permanent},
    };
    for (const Case& c : cases) {
        INFO(c.reply);
        CHECK(bounce_class_name(classify_failure(remote(c.reply), c.permanent)) ==
              std::string(bounce_class_name(c.want)));
    }
}

TEST_CASE("the queue's own diagnostics are classified too") {
    CHECK(classify_failure("4.4.1 destination mx.example.net is not reachable (connection refused)", false) ==
          BounceClass::other_transient);
    CHECK(classify_failure("5.1.2 Host or domain name not found. Name service error for name=nx.example type=MX",
                           true) == BounceClass::bad_domain);
    CHECK(classify_failure("5.4.4 Host or domain name not found: no address records for mx.example", true) ==
          BounceClass::bad_domain);
    CHECK(classify_failure("5.1.10 Domain does not accept mail (null MX)", true) == BounceClass::bad_domain);
    CHECK(classify_failure("4.7.5 DANE verification failed for host mx.example", false) ==
          BounceClass::tls_auth_required);
    CHECK(classify_failure("4.7.4 TLS is required, but was not offered by host mx.example", false) ==
          BounceClass::tls_auth_required);
    CHECK(classify_failure("5.7.30 REQUIRETLS support required: TLS level none", true) ==
          BounceClass::tls_auth_required);
    CHECK(classify_failure("5.1.1 no such user", true) == BounceClass::bad_mailbox);
    CHECK(classify_failure("message expired: 4.4.1 destination mx.example is not reachable", true) ==
          BounceClass::other_permanent);
    CHECK(classify_failure("5.4.6 mail for example.net loops back to myself", true) == BounceClass::other_permanent);
}

TEST_CASE("odd input never breaks the classifier") {
    CHECK(classify_failure("", false) == BounceClass::other_transient);
    CHECK(classify_failure("", true) == BounceClass::other_permanent);
    CHECK(classify_failure("x] said: ", true) == BounceClass::other_permanent);
    CHECK(classify_failure("550 5..1 broken", true) == BounceClass::other_permanent);
    CHECK(classify_failure("550 5.1.1234 four-digit detail", true) == BounceClass::other_permanent);
    CHECK(classify_failure("550-5.1.1 first line of a multi-line reply", true) == BounceClass::bad_mailbox);
    CHECK(classify_failure(std::string(100000, 'a'), false) == BounceClass::other_transient);
}

TEST_CASE("class names round-trip and only hard failures are suppressible") {
    for (uint8_t i = 0; i <= kBounceClassMax; i++) {
        auto c = bounce_class_from_name(bounce_class_name(BounceClass(i)));
        REQUIRE(c.has_value());
        CHECK(uint8_t(*c) == i);
    }
    CHECK_FALSE(bounce_class_from_name("nonsense").has_value());
    CHECK(hard_bounce(BounceClass::bad_mailbox));
    CHECK(hard_bounce(BounceClass::bad_domain));
    CHECK_FALSE(hard_bounce(BounceClass::mailbox_full));
    CHECK_FALSE(hard_bounce(BounceClass::other_permanent));
}
