// The result names of RFC 8601 §2.7 shared by DKIM, SPF and DMARC verdicts (each uses a subset).
#pragma once

namespace mta::msgauth {

enum class AuthResult { none, pass, fail, softfail, neutral, policy, temperror, permerror };

inline const char* result_name(AuthResult r) {
    switch (r) {
        case AuthResult::none: return "none";
        case AuthResult::pass: return "pass";
        case AuthResult::fail: return "fail";
        case AuthResult::softfail: return "softfail";
        case AuthResult::neutral: return "neutral";
        case AuthResult::policy: return "policy";
        case AuthResult::temperror: return "temperror";
        case AuthResult::permerror: return "permerror";
    }
    return "permerror";
}

}  // namespace mta::msgauth
