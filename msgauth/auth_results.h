// Authentication-Results (RFC 8601) and Received-SPF (RFC 7208 §9.1) header text with our authserv-id,
// and recognizing incoming Authentication-Results that claim it. Values come from the network (sender
// addresses, d=, reasons), so everything is quoted or escaped; recognition trusts nothing.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "msgauth/dkim_canon.h"
#include "msgauth/dkim_verify.h"
#include "msgauth/dmarc.h"
#include "msgauth/result.h"
#include "msgauth/spf.h"

namespace mta::msgauth {

struct AuthMethodResult {
    std::string method;   // "dkim", "spf", "dmarc"
    AuthResult result = AuthResult::none;
    std::string reason;   // reason="..."; empty: none
    std::string comment;  // "(...)" right after the result; empty: none
    std::vector<std::pair<std::string, std::string>> properties;  // ptype.property, value
};

// "Authentication-Results: <id>;\r\n\t<method>=<result> ...", one method per line, folded below 78
// columns where the values allow, CRLF-terminated. No methods: "<id>; none" (RFC 8601 §2.2).
std::string authentication_results(std::string_view authserv_id, const std::vector<AuthMethodResult>& methods);

// The usual properties for each check.
AuthMethodResult dkim_method(const DkimVerdict& v);  // header.d, header.i, header.s, header.a, header.b
AuthMethodResult spf_method(AuthResult r, SpfIdentity identity, std::string_view checked);  // smtp.mailfrom / smtp.helo
AuthMethodResult dmarc_method(const DmarcVerdict& v, std::string_view from_domain);  // header.from, policy in a comment

struct ReceivedSpf {
    AuthResult result = AuthResult::none;
    std::string receiver;       // our host name
    IpAddress client_ip;
    std::string envelope_from;  // MAIL FROM as given ("" for <>)
    std::string helo;
    SpfIdentity identity = SpfIdentity::mailfrom;
    std::string sender;         // the <sender> checked (postmaster@HELO for <> or the HELO identity)
    std::string mechanism;      // the deciding term, "" when none
    std::string problem;        // for temperror/permerror
};

// "Received-SPF: pass (receiver: domain of ... designates ... as permitted sender) key=value; ...",
// CRLF-terminated (RFC 7208 §9.1).
std::string received_spf(const ReceivedSpf& r);

// True when an Authentication-Results value (what follows the colon) names `authserv_id`: compared
// case-insensitively, as a token or a quoted-string, with comments and folding around it.
bool claims_authserv_id(std::string_view value, std::string_view authserv_id);

// Indices into `fields` of every Authentication-Results field claiming our id: a forged verdict must
// never reach the mailbox, so the daemon removes these before adding its own.
std::vector<std::size_t> forged_auth_results(const std::vector<HeaderField>& fields, std::string_view authserv_id);

}  // namespace mta::msgauth
