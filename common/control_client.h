// Client side of mtad's control socket, shared by the admin tools: one command line, one text answer.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mta {

// Sends `command` and returns the answer; false with `err` when mtad is unreachable.
bool control_request(const std::string& socket_path, const std::string& command, std::string& answer, std::string& err);
// The same, handing each piece of the answer to `sink` as it arrives (a long listing streams).
bool control_stream(const std::string& socket_path, const std::string& command,
                    const std::function<void(std::string_view)>& sink, std::string& err);

// One DNS answer from the running mta-resolver, as mtad's "resolve NAME QTYPE" command prints it.
struct ResolveAnswer {
    long rcode = 65535;  // 65535: no answer at all
    std::string dnssec = "insecure", text;
    std::vector<std::string> records;  // presentation text; TXT: the character-strings concatenated
    bool ok() const { return rcode == 0 && dnssec != "bogus"; }
    std::string status() const;  // "NOERROR, insecure", "SERVFAIL, insecure, timeout", ...
};

// Asks the resolver of the mtad at socket_path; false with err when mtad is unreachable or refuses.
bool control_resolve(const std::string& socket_path, const std::string& name, int qtype, ResolveAnswer& a,
                     std::string& err);

}  // namespace mta
