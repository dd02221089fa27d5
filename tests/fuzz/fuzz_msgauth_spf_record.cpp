// libFuzzer target for the SPF record parser and the macro expander: no crash, parsed records keep
// their bounds (CIDR ranges, address families), expansion agrees with the syntax check and stays
// bounded, and query names are always askable names.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/spf_macro.h"
#include "msgauth/spf_record.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

namespace {


void check_query_name(const std::string& n) {
    if (n.empty()) return;
    require(n.size() <= 253 && n.front() != '.' && n.back() != '.' && n.find("..") == std::string::npos);
    std::size_t label = 0;
    for (char c : n) {
        label = c == '.' ? 0 : label + 1;
        require(label <= 63 && (c == '.' || c == '-' || c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string in(reinterpret_cast<const char*>(data), size);
    SpfRecord rec;
    std::string err;
    if (parse_spf_record(in, rec, err)) {
        require(is_spf_record(in));
        for (const SpfDirective& d : rec.directives) {
            require(d.cidr4 >= 0 && d.cidr4 <= 32 && d.cidr6 >= 0 && d.cidr6 <= 128);
            if (d.mechanism == SpfMechanism::ip4) require(!d.network.v6);
            if (d.mechanism == SpfMechanism::ip6) require(d.network.v6);
            if (d.mechanism == SpfMechanism::include || d.mechanism == SpfMechanism::exists)
                require(!d.domain_spec.empty());
            require(!d.text.empty() && in.find(d.text) != std::string::npos);
        }
    }

    SpfMacroContext ctx;
    ctx.sender = "Strong-Bad+x@Email.Example.com";
    ctx.local_part = "Strong-Bad+x";
    ctx.sender_domain = "Email.Example.com";
    ctx.domain = "email.example.com";
    parse_ip(size % 2 ? "2001:db8::cb01" : "192.0.2.3", ctx.ip);
    ctx.helo = "mx.example.org";
    ctx.receiver = "rcv.example";
    const std::string p = "validated.example.org";
    for (MacroKind kind : {MacroKind::domain, MacroKind::exp}) {
        const bool valid = valid_macro_string(in, kind);
        std::string out;
        MacroStatus s = expand_macros(in, ctx, kind, out);
        if (!valid) require(s == MacroStatus::syntax_error);
        ctx.validated_name = &p;
        MacroStatus s2 = expand_macros(in, ctx, kind, out);
        ctx.validated_name = nullptr;
        require(s2 != MacroStatus::needs_ptr);
        if (s2 == MacroStatus::ok) {
            require(valid && out.size() <= kMaxMacroExpansion);
            check_query_name(spf_query_name(out));
        }
    }
    check_query_name(spf_query_name(in));

    IpAddress ip;
    if (parse_ip(in, ip)) {
        IpAddress again;
        require(parse_ip(ip_to_text(ip), again, false) && again == ip);
        require(ip_in_network(ip, ip, ip.v6 ? 128 : 32));
    }
    return 0;
}
