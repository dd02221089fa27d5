// Unit tests for msgauth/msgauth_job: which checks a message gets (trusted: sign; untrusted: verify;
// neither), the DNS questions asked once each, the verdicts the settings turn into refusals, and the
// octet ranges of forged Authentication-Results. DNS is a table; no I/O.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "msgauth/msgauth_job.h"

using namespace mta;
using namespace mta::msgauth;

namespace {

const std::string kHead = "From: a@sender.example\r\nTo: b@example.org\r\nSubject: hi\r\n";
const std::string kForged = "Authentication-Results: mx.example; dkim=pass header.d=bank.example\r\n";
const std::string kOther = "Authentication-Results: other.example; spf=pass\r\n";
const std::string kBody = "\r\nHello.\r\n";

struct Fixture {
    PublicSuffixList psl;
    SigningKeys keys;  // none: trusted mail without keys is left alone
    JobSettings settings{"mx.example", true, 8, false, false};
    std::map<std::string, msgauth::DnsAnswer> txt;
    std::vector<std::string> asked;
    Fixture() {
        std::string err;
        REQUIRE(psl.load_text("example\n", err));
    }
    wire::MsgauthReply run(const std::string& message, bool trusted, std::string sender = "a@sender.example") {
        Job job(settings, keys, psl, JobFacts{"192.0.2.1", "client.example", sender, "", trusted}, message, 1000, 0);
        for (int round = 0; !job.done() && round < 50; round++) {
            auto qs = job.new_queries();
            REQUIRE_FALSE(qs.empty());  // a job that is not done always waits for something
            for (auto& q : qs) {
                asked.push_back(q.name);
                auto it = q.type == DnsType::txt ? txt.find(q.name) : txt.end();
                job.answer(q, it == txt.end() ? msgauth::DnsAnswer{msgauth::DnsAnswer::Status::nxdomain, {}} : it->second);
            }
        }
        REQUIRE(job.done());
        return job.reply();
    }
};

}  // namespace

TEST_CASE("msgauth job: trusted mail without a key is neither signed nor checked, forged results still cut") {
    Fixture f;
    auto r = f.run(kHead + kForged + kBody, true);
    CHECK(r.action == ipc::MsgauthAction::accept);
    CHECK(r.prepend.empty());
    REQUIRE(r.cuts.size() == 1);
    CHECK(r.cuts[0].offset == kHead.size());
    CHECK(r.cuts[0].length == kForged.size());
    CHECK(f.asked.empty());
}

TEST_CASE("msgauth job: untrusted mail gets Authentication-Results and Received-SPF; each question asked once") {
    Fixture f;
    f.txt["sender.example"] = {msgauth::DnsAnswer::Status::ok, {"v=spf1 ip4:192.0.2.1 -all"}};
    f.txt["_dmarc.sender.example"] = {msgauth::DnsAnswer::Status::ok, {"v=DMARC1; p=reject"}};
    auto r = f.run(kHead + kOther + kForged + kBody, false);
    CHECK(r.action == ipc::MsgauthAction::accept);
    CHECK(r.prepend.rfind("Authentication-Results: mx.example;", 0) == 0);
    CHECK(r.prepend.find("spf=pass smtp.mailfrom=a@sender.example") != std::string::npos);
    CHECK(r.prepend.find("dmarc=pass") != std::string::npos);
    CHECK(r.prepend.find("\r\nReceived-SPF: pass ") != std::string::npos);
    CHECK(wire::valid_header_block(r.prepend));
    REQUIRE(r.cuts.size() == 1);
    CHECK(r.cuts[0].offset == kHead.size() + kOther.size());
    std::map<std::string, int> times;
    for (auto& n : f.asked) times[n]++;
    for (auto& kv : times) CHECK_MESSAGE(kv.second == 1, kv.first);
}

TEST_CASE("msgauth job: spf_action and dmarc_action turn verdicts into refusals") {
    Fixture f;
    f.txt["sender.example"] = {msgauth::DnsAnswer::Status::ok, {"v=spf1 -all"}};
    f.txt["_dmarc.sender.example"] = {msgauth::DnsAnswer::Status::ok, {"v=DMARC1; p=reject"}};
    auto r = f.run(kHead + kBody, false);
    CHECK(r.action == ipc::MsgauthAction::accept);  // reported only by default
    CHECK(r.prepend.find("dmarc=fail") != std::string::npos);
    f.settings.dmarc_enforce = true;
    r = f.run(kHead + kBody, false);
    CHECK((r.action == ipc::MsgauthAction::reject && r.code == 550 && r.enhanced == "5.7.1"));
    CHECK(r.prepend.empty());
    f.settings.spf_reject_fail = true;
    r = f.run(kHead + kBody, false);
    CHECK((r.action == ipc::MsgauthAction::reject && r.code == 550 && r.enhanced == "5.7.23"));
}

TEST_CASE("msgauth job: msgauth_verify = no leaves untrusted mail alone; a header past the bounds is refused") {
    Fixture f;
    f.settings.verify = false;
    auto r = f.run(kHead + kBody, false);
    CHECK((r.action == ipc::MsgauthAction::accept && r.prepend.empty() && f.asked.empty()));
    std::string many;
    for (int i = 0; i < 10001; i++) many += "X-A: b\r\n";
    r = f.run(many + kBody, false);
    CHECK((r.action == ipc::MsgauthAction::reject && r.code == 552));
}
