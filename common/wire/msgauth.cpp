// The smtpd <-> msgauth codecs (see msgauth.h).
#include "common/wire/msgauth.h"

#include "common/wire/fields.h"
#include "common/wire/limits.h"

namespace mta::wire {
namespace {

using ipc::Tag;

bool field_name_char(char c) { return c > 32 && c < 127 && c != ':'; }

}  // namespace

bool valid_header_block(std::string_view block) {
    bool first = true;
    while (!block.empty()) {
        std::size_t end = block.find("\r\n");
        if (end == std::string_view::npos || end > 998) return false;
        std::string_view line = block.substr(0, end);
        for (char c : line)
            if (c == '\0' || c == '\r' || c == '\n') return false;
        if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
            if (first || line.find_first_not_of(" \t") == std::string_view::npos) return false;
        } else {
            std::size_t colon = line.find(':');
            if (colon == 0 || colon == std::string_view::npos) return false;
            for (char c : line.substr(0, colon))
                if (!field_name_char(c)) return false;
        }
        first = false;
        block.remove_prefix(end + 2);
    }
    return true;
}

ipc::Message encode(MsgauthRequest& r, uint64_t reqid) {
    ipc::Message m(ipc::Type::msgauth_request, reqid);
    m.add_u64(Tag::msgid, r.msgid).add(Tag::client_addr, r.client_addr).add(Tag::client_helo, r.client_helo);
    m.add(Tag::sender, r.sender).add_u64(Tag::msgauth_trusted, r.trusted);
    if (!r.auth_user.empty()) m.add(Tag::auth_user, r.auth_user);
    m.add_fd(std::move(r.body));
    return m;
}

bool decode(ipc::Message& m, MsgauthRequest& out, std::string& err) {
    static const Shape shape{{Tag::msgid, Tag::client_addr, Tag::client_helo, Tag::sender, Tag::auth_user,
                              Tag::msgauth_trusted},
                             {}, std::nullopt, 0, 1};
    out = MsgauthRequest{};
    Fields fs;
    if (!fs.split(m, ipc::Type::msgauth_request, shape, err) ||
        !need_u64(fs.get(Tag::msgid), Tag::msgid, UINT64_MAX, out.msgid, err) ||
        !need_text(fs.get(Tag::client_addr), Tag::client_addr, kMaxClientField, out.client_addr, err) ||
        !need_text(fs.get(Tag::client_helo), Tag::client_helo, kMaxClientField, out.client_helo, err) ||
        !need_text(fs.get(Tag::sender), Tag::sender, kMaxAddress, out.sender, err) ||
        !opt_text(fs.get(Tag::auth_user), kMaxClientField, out.auth_user, err) ||
        !opt_bool(fs.get(Tag::msgauth_trusted), out.trusted, err))
        return false;
    if (out.msgid == 0) { err = "bad msgid"; return false; }
    out.body = std::move(m.fds[0]);
    return true;
}

bool seal_msgauth_body(int fd) { return fcntl(fd, F_ADD_SEALS, kMsgauthBodySeals | F_SEAL_SEAL) == 0; }

bool cuts_fit(const std::vector<MsgauthCut>& cuts, uint64_t size) {
    return cuts.empty() || cuts.back().offset + cuts.back().length <= size;
}

ipc::Message encode(const MsgauthReply& r, uint64_t reqid) {
    ipc::Message m(ipc::Type::msgauth_reply, reqid);
    m.add_u64(Tag::msgauth_action, uint64_t(r.action));
    if (r.action == ipc::MsgauthAction::hold) {
        m.add(Tag::text, make_clean(r.text, kMaxMsgauthText));
    } else if (r.action != ipc::MsgauthAction::accept) {
        m.add_u64(Tag::code, uint64_t(r.code)).add(Tag::text, make_clean(r.text, kMaxMsgauthText));
        if (!r.enhanced.empty()) m.add(Tag::enhanced, r.enhanced);
    }
    if (!r.prepend.empty()) m.add(Tag::msgauth_prepend, r.prepend);
    for (const MsgauthCut& c : r.cuts) m.add_u64(Tag::msgauth_cut_offset, c.offset).add_u64(Tag::msgauth_cut_length, c.length);
    return m;
}

bool decode(const ipc::Message& m, MsgauthReply& out, std::string& err) {
    static const Shape shape{{Tag::msgauth_action, Tag::code, Tag::enhanced, Tag::text, Tag::msgauth_prepend},
                             {Tag::msgauth_cut_offset, Tag::msgauth_cut_length}, Tag::msgauth_cut_offset,
                             kMaxMsgauthCuts, 0};
    out = MsgauthReply{};
    Fields fs;
    uint64_t action = 0, code = 0;
    if (!fs.split(m, ipc::Type::msgauth_reply, shape, err) ||
        !need_u64(fs.get(Tag::msgauth_action), Tag::msgauth_action, 3, action, err) ||
        !opt_u64(fs.get(Tag::code), 599, code, err) || !opt_text(fs.get(Tag::enhanced), 9, out.enhanced, err) ||
        !opt_text(fs.get(Tag::text), kMaxMsgauthText, out.text, err) ||
        !opt_bytes(fs.get(Tag::msgauth_prepend), kMaxMsgauthPrepend, out.prepend, err))
        return false;
    out.action = ipc::MsgauthAction(action);
    out.code = int(code);
    const bool accept = out.action == ipc::MsgauthAction::accept;
    const bool hold = out.action == ipc::MsgauthAction::hold;
    const int want = out.action == ipc::MsgauthAction::reject ? 5 : 4;
    if (accept ? (code != 0 || fs.get(Tag::text) || fs.get(Tag::enhanced))
        : hold ? (code != 0 || fs.get(Tag::enhanced) || out.text.empty())
               : out.code / 100 != want) {
        err = "bad code";
        return false;
    }
    if (!out.enhanced.empty() &&
        (out.enhanced.size() < 5 || out.enhanced[0] != char('0' + want) || out.enhanced[1] != '.' ||
         out.enhanced.find_first_not_of("0123456789.") != std::string::npos)) {
        err = "bad enhanced";
        return false;
    }
    if (!valid_header_block(out.prepend)) { err = "bad msgauth_prepend"; return false; }
    uint64_t end = 0;
    for (const Fields::Group& g : fs.groups()) {
        MsgauthCut c;
        if (!need_u64(find(g, Tag::msgauth_cut_offset), Tag::msgauth_cut_offset, UINT64_MAX, c.offset, err) ||
            !need_u64(find(g, Tag::msgauth_cut_length), Tag::msgauth_cut_length, UINT64_MAX, c.length, err))
            return false;
        if (c.length == 0 || c.offset < end || c.offset + c.length < c.offset) { err = "bad msgauth cut"; return false; }
        end = c.offset + c.length;
        out.cuts.push_back(c);
    }
    return true;
}

}  // namespace mta::wire
