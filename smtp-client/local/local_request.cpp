// mta-local's side of `deliver` / `deliver_result`: the common/wire codecs (which check every field; any
// inconsistency is malformed, never guessed around) mapped to what local delivery needs.
#include "smtp-client/local/local_request.h"

namespace mta::local {

bool parse_deliver(ipc::Message& m, DeliverRequest& out, std::string& err) {
    wire::Deliver d;
    if (!wire::decode(m, d, err)) return false;
    out.reqid = m.reqid;
    out.msgid = d.msgid;
    out.sender = std::move(d.sender);
    out.rcpts.clear();
    for (wire::DeliverRcpt& r : d.rcpts) out.rcpts.push_back({r.index, std::move(r.addr)});
    out.body = std::move(d.body);
    return true;
}

std::optional<std::string> recipient_local_part(std::string_view rcpt) {
    size_t at = rcpt.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == rcpt.size()) return std::nullopt;
    std::string_view local = rcpt.substr(0, at);
    if (local.front() != '"') {
        if (local.find('"') != std::string_view::npos || local.find('\\') != std::string_view::npos)
            return std::nullopt;
        return std::string(local);
    }
    if (local.size() < 2 || local.back() != '"') return std::nullopt;
    std::string out;
    for (size_t i = 1; i + 1 < local.size(); i++) {
        char c = local[i];
        if (c == '"') return std::nullopt;  // an unescaped quote inside: not one quoted-string
        if (c == '\\') {
            if (i + 2 >= local.size()) return std::nullopt;  // the escape would eat the closing quote
            c = local[++i];
        }
        out.push_back(c);
    }
    return out;
}

ipc::Message build_result(uint64_t reqid, uint64_t msgid, const std::vector<RcptResult>& results) {
    wire::DeliverResult res;
    res.msgid = msgid;
    for (const RcptResult& r : results) res.results.push_back({uint32_t(r.index), r.outcome.status, r.outcome.text, 0});
    return wire::encode(res, reqid);
}

}  // namespace mta::local
