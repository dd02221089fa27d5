// DKIM-Signature generation (see dkim_sign.h).
#include "msgauth/dkim_sign.h"

#include <algorithm>

#include "common/address.h"
#include "msgauth/header_fold.h"

namespace mta::msgauth {

namespace {

struct SignedName {
    const char* name;
    bool oversign;
};

// RFC 6376 §5.4.1's list; the oversigned ones are those whose addition would change what a reader sees.
constexpr SignedName kSignedNames[] = {
    {"from", true},          {"reply-to", true},      {"subject", true},
    {"date", true},          {"to", true},            {"cc", true},
    {"message-id", true},    {"mime-version", true},  {"content-type", true},
    {"content-transfer-encoding", true},              {"in-reply-to", false},
    {"references", false},   {"sender", false},       {"resent-date", false},
    {"resent-from", false},  {"resent-sender", false}, {"resent-to", false},
    {"resent-cc", false},    {"resent-message-id", false},
    {"content-id", false},   {"content-description", false},
    {"list-id", false},      {"list-help", false},    {"list-unsubscribe", false},
    {"list-subscribe", false}, {"list-post", false},  {"list-owner", false},
    {"list-archive", false},
};

}  // namespace

std::vector<std::string> headers_to_sign(const std::vector<HeaderField>& fields) {
    std::vector<std::string> names;
    for (const SignedName& s : kSignedNames) {
        std::size_t n = static_cast<std::size_t>(std::count_if(
            fields.begin(), fields.end(), [&](const HeaderField& f) { return iequals(f.name, s.name); }));
        n = std::min(n, kMaxSignedHeaders / 4);  // a message with 10,000 To: fields does not get them all
        if (s.oversign) n++;
        names.insert(names.end(), n, s.name);
    }
    return names;
}

DkimSigner::DkimSigner(std::vector<const DkimSigningKey*> keys, uint64_t now, std::optional<uint64_t> expire_after)
    : keys_(std::move(keys)), now_(now), expire_after_(expire_after) {}

void DkimSigner::feed_body(std::string_view chunk) {
    body_.feed(chunk, buf_);
    body_hash_.update(buf_);
    buf_.clear();
}

bool DkimSigner::finish(const std::vector<HeaderField>& fields, std::vector<std::string>& out, std::string& err) {
    out.clear();
    body_.finish(buf_);
    body_hash_.update(buf_);
    buf_.clear();
    std::string bh = body_hash_.final();
    if (bh.empty()) {
        err = "body hash failed";
        return false;
    }
    const std::vector<std::string> names = headers_to_sign(fields);
    for (const DkimSigningKey* k : keys_) {
        const char* alg = k->key.type == DkimKeyType::rsa ? "a=rsa-sha256;" : "a=ed25519-sha256;";
        HeaderFolder f("DKIM-Signature:");
        f.add("v=1;", true);
        f.add(alg, true);
        f.add("c=relaxed/relaxed;", true);
        f.add("d=" + k->domain + ";", true);
        f.add("s=" + k->selector + ";", true);
        f.add("t=" + std::to_string(now_) + ";", true);
        if (expire_after_) f.add("x=" + std::to_string(now_ + *expire_after_) + ";", true);
        for (std::size_t i = 0; i < names.size(); i++) {
            std::string token = (i == 0 ? "h=" : "") + names[i] + (i + 1 == names.size() ? ";" : ":");
            f.add(token, i == 0);
        }
        f.add("bh=" + base64_encode(bh) + ";", true);
        f.add("b=", true);
        std::string digest = sha256(canonical_header_data(DkimCanon::relaxed, fields, names, f.text()));
        std::string sig;
        if (digest.empty() || !sign_digest(k->key, digest, sig, err)) return false;
        // b= folded in full lines; the verifier removes the value with its whitespace.
        std::string b = base64_encode(sig);
        for (std::size_t pos = 0; pos < b.size();) {
            if (f.column() >= HeaderFolder::kWidth) f.newline();
            std::size_t n = std::min(b.size() - pos, HeaderFolder::kWidth - f.column());
            f.add(std::string_view(b).substr(pos, n), false);
            pos += n;
        }
        std::string& field = f.text();
        field.append("\r\n");
        out.push_back(std::move(field));
    }
    return true;
}

bool dkim_sign_message(std::string_view message, const std::vector<const DkimSigningKey*>& keys, uint64_t now,
                       std::vector<std::string>& out, std::string& err) {
    HeaderSection hs;
    if (!parse_header_section(message, hs, err)) return false;
    DkimSigner signer(keys, now);
    signer.feed_body(message.substr(hs.body_offset));
    return signer.finish(hs.fields, out, err);
}

}  // namespace mta::msgauth
