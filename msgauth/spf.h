// SPF check_host() (RFC 7208 §4-§6, §8) as a resumable state machine: it asks one DNS question at a
// time and the caller (the daemon, through mta-resolver) feeds the answer back. DNS data is untrusted:
// include loops, huge records and lookup storms end in permerror within the §4.6.4 limits.
//
// Limits: 10 terms that cause DNS queries (include a mx ptr exists redirect), 2 void lookups (each
// query answered NXDOMAIN or NODATA counts, as pyspf does), 10 MX names per mx (more: permerror), the
// first 10 PTR names per validation; exp= lookups count towards none of them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "msgauth/dns.h"
#include "msgauth/result.h"
#include "msgauth/spf_macro.h"
#include "msgauth/spf_record.h"

namespace mta::msgauth {

inline constexpr std::size_t kSpfMaxTerms = 10;
inline constexpr std::size_t kSpfMaxVoid = 2;
inline constexpr std::size_t kSpfMaxNames = 10;   // MX names per mx, PTR names per validation
inline constexpr std::size_t kSpfMaxQueries = 200;  // a backstop the limits above never reach

struct SpfRequest {
    IpAddress ip;
    std::string sender;    // MAIL FROM address, "" for the null sender
    std::string helo;      // HELO/EHLO argument
    std::string receiver;  // our host name, for %{r}
    uint64_t now = 0;      // for %{t}
};

enum class SpfIdentity {
    mailfrom,  // check_host for the MAIL FROM domain (postmaster@HELO for the null sender)
    helo,      // check_host for the HELO domain (§2.3)
};

class SpfCheck {
public:
    SpfCheck(const SpfRequest& req, SpfIdentity identity);
    ~SpfCheck();
    SpfCheck(SpfCheck&&) noexcept;  // the daemon keeps checks in its session table
    SpfCheck& operator=(SpfCheck&&) noexcept;

    bool done() const { return done_; }
    const DnsQuery& query() const { return query_; }  // the pending question while !done()
    void answer(const DnsAnswer& a);

    // none, neutral, pass, fail, softfail, temperror or permerror once done().
    AuthResult result() const { return result_; }
    const std::string& domain() const { return domain_; }            // the identity's domain ("" if unusable)
    const std::string& sender() const { return sender_; }            // the <sender> checked
    const std::string& mechanism() const { return mechanism_; }      // the deciding term, "default" or ""
    const std::string& explanation() const { return explanation_; }  // exp= text, only for fail
    const std::string& problem() const { return problem_; }          // why: permerror, temperror, none
    std::size_t terms() const { return terms_; }
    std::size_t void_lookups() const { return voids_; }

private:
    struct Frame;
    enum class Wait { none, record, a, mx, mx_addr, ptr_names, ptr_addr, exists, exp };

    void run();
    void step_directive(Frame& f);
    void step_redirect(Frame& f);
    void step_exp();
    void match(Frame& f);
    void advance(Frame& f);
    void end_frame(AuthResult r, const std::string& mechanism);
    void finish(AuthResult r, std::string problem);
    void ask(std::string name, DnsType type, Wait w);
    void start_ptr();
    MacroStatus expand(std::string_view spec, const std::string& domain, MacroKind kind, std::string& out) const;
    bool expand_target(const Frame& f, const std::string& spec, std::string& name);
    bool count_term();
    bool count_void(const DnsAnswer& a);
    void on_record(const DnsAnswer& a);
    void on_addresses(const DnsAnswer& a);
    void on_mx(const DnsAnswer& a);
    void on_mx_addr(const DnsAnswer& a);
    void on_ptr_names(const DnsAnswer& a);
    void on_ptr_addr(const DnsAnswer& a);
    void on_exp(const DnsAnswer& a);
    void next_mx_addr();
    void next_ptr_addr();
    bool address_matches(const DnsAnswer& a, int cidr4, int cidr6) const;

    SpfRequest req_;
    std::string sender_, local_, sender_domain_, domain_;
    std::vector<std::unique_ptr<Frame>> frames_;
    bool done_ = false;
    AuthResult result_ = AuthResult::none;
    std::string mechanism_, explanation_, problem_;
    DnsQuery query_;
    Wait wait_ = Wait::none;
    std::size_t terms_ = 0, voids_ = 0, queries_ = 0;
    bool term_counted_ = false;   // the current directive's term is already counted

    std::vector<std::string> names_;  // MX names or PTR names being walked
    std::size_t name_index_ = 0;

    enum class Ptr { unknown, running, known } ptr_state_ = Ptr::unknown;
    std::vector<std::string> validated_;  // validated PTR names of the client (§5.5)

    bool in_exp_ = false;
    std::string exp_spec_, exp_domain_, exp_text_;
    bool exp_text_known_ = false;
};

}  // namespace mta::msgauth
