// mtadns --check-sender: is this host ready to send mail for a domain? One finding per check, each OK,
// WARN or FAIL with what to fix: the domain's MX; for each source address its reverse DNS, that the name
// resolves back to it, that EHLO gives that name, that SPF authorizes it and that no block list of
// smtpd_dnsbl_zones lists it; each DKIM key of dkim_keys published as it is; DMARC, MTA-STS and TLS-RPT
// records. DNS goes through a Resolve function (mtad's resolver in the tool, a table in tests).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/control_client.h"
#include "common/dnsbl.h"

namespace mta::dnscheck {

struct Finding {
    std::string status;  // OK, WARN or FAIL
    std::string check;   // mx, rdns, fcrdns, helo, spf, dnsbl, dkim, dmarc, mta-sts, tls-rpt, source
    std::string subject; // what it is about: the domain, an address, a selector
    std::string detail;
    std::string fix;     // "" for OK
};

using Resolve = std::function<bool(const std::string& name, int qtype, ResolveAnswer& a, std::string& err)>;

struct DkimExpect {
    std::string domain, selector;
    std::string record;  // the record our key needs ("v=DKIM1; k=...; p=...")
};

struct SenderInput {
    std::string domain;                 // lower-case
    std::vector<std::string> addresses; // source addresses to check
    std::string helo;                   // smtp_helo_name or hostname
    std::map<std::string, std::string> helos;  // source_addresses: an address's own helo= name
    std::vector<DnsblZone> dnsbl;       // smtpd_dnsbl_zones
    std::vector<DkimExpect> dkim;       // the keys dkim_keys has for the domain
    std::string dkim_problem;           // dkim_keys could not be read ("" when fine or not configured)
    std::string org_domain;             // the domain's organizational domain (DMARC fallback), "" = same
};

std::vector<Finding> check_sender(const SenderInput& in, const Resolve& resolve);
std::string format_text(const std::vector<Finding>& f);
std::string format_json(const std::string& domain, const std::vector<Finding>& f);
bool any_fail(const std::vector<Finding>& f);

}  // namespace mta::dnscheck
