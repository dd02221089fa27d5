// Admin requests relayed by mtad (mtaqueue, mailq): read the queue's true state (store + in-memory
// in-flight set) and apply hold/release/delete/flush/requeue: the messages named by id in one LMDB
// transaction, a change without ids a transaction per slice of the queue. Recipients that are in flight
// are never touched. Non-privileged users may only list/show mail they submitted with
// sendmail (submit_uid == their uid); mtad decides who is privileged (root or its own uid).
#include "queue-manager/admin_ops.h"

#include <algorithm>
#include <event2/event.h>
#include <unordered_set>

#include "common/address.h"
#include "common/log.h"
#include "common/role.h"
#include "common/wire/wire.h"
#include "queue-manager/admin.h"
#include "queue-manager/dsn.h"
#include "queue-manager/envelope.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

constexpr std::size_t kReplyChunk = 128 * 1024;  // mtad relays each chunk; the IPC cap is 256 KiB

// A recipient filter (--to, --domain, --state) narrows a change to the matching recipients.
bool rcpt_selected(const AdminFilter& f, const RcptView& r) {
    if (!f.to.empty() && addr::lower(r.rec.addr) != f.to) return false;
    if (!f.domain.empty() && rcpt_domain(r.rec.addr) != f.domain) return false;
    if (!f.state.empty() && f.state != "corrupt" && rcpt_state_name(r) != f.state) return false;
    return true;
}

// A change to every message that matches (no queue ids named) goes through the queue a slice at a time.
bool is_sweep(const AdminCommand& cmd) {
    static const char* kChanges[] = {"hold", "release", "delete", "flush", "requeue"};
    if (!cmd.filter.ids.empty()) return false;
    for (const char* v : kChanges)
        if (cmd.verb == v) return true;
    return false;
}

// A message's times as the wall clock shows them: mtaqueue prints these, the store keeps queue time.
MessageView shown(MessageView v, const Clock& clock) {
    v.msg.arrival = clock.shown(v.msg.arrival);
    for (auto& r : v.rcpts) {
        r.rec.next_attempt = clock.shown(r.rec.next_attempt);
        r.rec.last_attempt = clock.shown(r.rec.last_attempt);
        r.rec.held_at = clock.shown(r.rec.held_at);
    }
    return v;
}

}  // namespace

AdminOps::AdminOps(event_base* base, Store& store, Clock clock, Queue queue)
    : store_(store), clock_(std::move(clock)), q_(std::move(queue)) {
    work_ev_.reset(evtimer_new(base, [](evutil_socket_t, short, void* a) { static_cast<AdminOps*>(a)->work_round(); }, this));
}

void AdminOps::on_request(ipc::Message& m) {
    if (m.type == ipc::Type::admin_more) return on_more(m);
    wire::AdminRequest req;
    if (std::string why; !wire::decode(m, req, why)) daemon::malformed(Role::master, "admin_request: " + why);
    LOG_INFO("event=admin uid=%llu privileged=%d command=\"%s\"", (unsigned long long)req.uid,
             int(req.privileged), log::safe(req.text).c_str());
    q_.flush();  // pending results first, so what we show and change is the true state
    AdminCommand cmd;
    std::string err, reply;
    std::optional<uint64_t> only_uid = req.privileged ? std::nullopt : std::optional<uint64_t>(req.uid);
    if (!parse_admin(req.text, cmd, err)) reply = "error: " + err + "\n";
    else if (cmd.privileged_only() && !req.privileged) reply = "error: permission denied\n";
    else if (cmd.verb == "list" && listings_.size() + sweeps_.size() >= kMaxListings)
        reply = "error: too many listings in progress, try again\n";
    else if (cmd.verb == "list") return start_listing(m.reqid, cmd, only_uid);
    else if (is_sweep(cmd) && listings_.size() + sweeps_.size() >= kMaxListings)
        reply = "error: too many queue changes in progress, try again\n";
    else if (is_sweep(cmd)) {
        sweeps_.emplace(m.reqid, Sweep{cmd, only_uid, clock_.now(), req.uid, 0, {}});
        ready_.push_back(m.reqid);
        return schedule_round();
    } else reply = run(cmd, only_uid, req.uid);
    for (auto& chunk : wire::encode_admin_chunks(reply, m.reqid, kReplyChunk)) q_.reply(std::move(chunk));
}

// The message as the request sees it, if its filters select it.
std::optional<MessageView> AdminOps::select(const AdminCommand& cmd, std::optional<uint64_t> only_uid, uint64_t id,
                                            MessageRecord& msg, RcptList& rcpts, uint64_t now) const {
    if (only_uid && msg.submit_uid != *only_uid) return std::nullopt;
    if (cmd.corrupt && msg.state != MessageState::corrupt) return std::nullopt;
    MessageView v;
    v.msgid = id;
    v.msg = std::move(msg);
    for (auto& [idx, rec] : rcpts) v.rcpts.push_back(RcptView{idx, std::move(rec), q_.busy(id, idx)});
    if (!matches(cmd.filter, v, now)) return std::nullopt;
    return v;
}

// A listing streams: a round reads a few slices of the store and sends what they gave as one chunk,
// then waits for mtad's admin_more (the tool has read it). A round that found nothing to show goes on in
// the next loop round. So the queue neither blocks on a million messages nor holds their text.
void AdminOps::start_listing(uint64_t reqid, const AdminCommand& cmd, std::optional<uint64_t> only_uid) {
    uint64_t now = clock_.now();
    Listing l{cmd, only_uid, ListFormatter(cmd.json, clock_.shown(now), store_.count("corrupt")), now, 0, {}};
    l.out = l.fmt.begin();
    // Named messages are looked up, not searched for: list from the smallest id named.
    if (!cmd.filter.ids.empty()) l.next = *std::min_element(cmd.filter.ids.begin(), cmd.filter.ids.end());
    listings_.emplace(reqid, std::move(l));
    ready_.push_back(reqid);
    schedule_round();
}

void AdminOps::schedule_round() {
    struct timeval zero = {0, 0};
    evtimer_add(work_ev_.get(), &zero);
}

void AdminOps::on_more(ipc::Message& m) {
    wire::AdminMore more;
    if (std::string why; !wire::decode(m, more, why)) daemon::malformed(Role::master, "admin_more: " + why);
    auto it = listings_.find(m.reqid);
    if (it == listings_.end()) return;  // an answer that was not streamed, or one already finished
    if (!more.go_on) {
        listings_.erase(it);
        return;
    }
    ready_.push_back(m.reqid);
    schedule_round();
}

// One listing or sweep per round (the first waiting; one that goes on moves to the back), so a round's
// work is bounded however many tools are served at once.
void AdminOps::work_round() {
    while (!ready_.empty()) {
        uint64_t reqid = ready_.front();
        ready_.pop_front();
        if (auto it = listings_.find(reqid); it != listings_.end()) {
            list_step(reqid, it->second);
            break;
        }
        if (auto it = sweeps_.find(reqid); it != sweeps_.end()) {
            sweep_step(reqid, it->second);
            break;
        }
    }
    if (!ready_.empty()) schedule_round();
}

// Up to kListSlices slices; what they gave goes out as one chunk, then the listing waits for admin_more.
// One that found nothing to send yet goes on next round.
void AdminOps::list_step(uint64_t reqid, Listing& l) {
    bool end = false;
    const auto& ids = l.cmd.filter.ids;
    uint64_t last_named = ids.empty() ? 0 : *std::max_element(ids.begin(), ids.end());
    for (std::size_t s = 0; s < kListSlices && !end && l.out.size() < kListChunk; s++) {
        l.next = store_.for_each_message_from(l.next, kListSlice, [&](uint64_t id, MessageRecord& msg, RcptList& rcpts) {
            if (auto v = select(l.cmd, l.only_uid, id, msg, rcpts, l.now)) l.out += l.fmt.add(shown(std::move(*v), clock_));
        });
        end = l.next == 0 || (last_named && l.next > last_named);
    }
    if (end) l.out += l.fmt.end();
    if (!end && l.out.empty()) {
        ready_.push_back(reqid);
        return;
    }
    for (auto& chunk : wire::encode_admin_chunks(l.out, reqid, kReplyChunk, end)) q_.reply(std::move(chunk));
    l.out.clear();
    if (end) listings_.erase(reqid);
}

// One transaction of kSweepSlice messages; the answer, with the sums, when the queue has been walked.
// Not one snapshot: a message that arrives meanwhile may or may not be changed.
void AdminOps::sweep_step(uint64_t reqid, Sweep& s) {
    q_.flush();  // results pending for this slice's recipients first
    std::vector<MessageView> msgs;
    s.next = store_.for_each_message_from(s.next, kSweepSlice, [&](uint64_t id, MessageRecord& msg, RcptList& rcpts) {
        if (auto v = select(s.cmd, s.only_uid, id, msg, rcpts, s.now)) msgs.push_back(std::move(*v));
    });
    std::string err = msgs.empty() ? "" : apply_change(s.cmd, msgs, s.now, s.uid, s.tally);
    if (err.empty() && s.next != 0) {
        ready_.push_back(reqid);
        return;
    }
    if (!err.empty() && s.tally.nmsg) err.insert(err.size() - 1, " (after " + std::to_string(s.tally.nmsg) + " messages were changed)");
    std::string reply = err.empty() ? change_text(s.cmd.verb, s.tally) : err;
    for (auto& chunk : wire::encode_admin_chunks(reply, reqid, kReplyChunk)) q_.reply(std::move(chunk));
    sweeps_.erase(reqid);
}

std::string AdminOps::run(const AdminCommand& cmd, std::optional<uint64_t> only_uid, uint64_t uid) {
    uint64_t now = clock_.now();
    if (cmd.verb == "stats") {
        std::size_t n = store_.count("suppression");
        ClassCounts counts = q_.class_counts();
        counts.since = clock_.shown(counts.since);
        uint64_t wall = clock_.shown(now);
        return cmd.json ? format_stats_json(counts, n, wall) : format_stats_text(counts, n, wall);
    }
    if (cmd.verb == "suppression") return suppression(cmd, uid, now);
    if (cmd.verb == "warmup") return warmup(cmd, uid, now);
    if (cmd.verb == "tlsrpt") return q_.tlsrpt(cmd.sub, cmd.json);
    // What is left names its messages (show and why one, a change with ids; list and a change without
    // ids stream or sweep): they are looked up one by one, not searched for.
    std::vector<MessageView> msgs;
    for (uint64_t id : std::set<uint64_t>(cmd.filter.ids.begin(), cmd.filter.ids.end()))
        store_.for_each_message_from(id, 1, [&](uint64_t got, MessageRecord& msg, RcptList& rcpts) {
            if (got != id) return;
            if (auto v = select(cmd, only_uid, got, msg, rcpts, now)) msgs.push_back(std::move(*v));
        });
    if (cmd.verb == "why") {
        if (msgs.empty()) return "error: no such message\n";
        MessageView v = shown(msgs[0], clock_);
        WhyContext c;
        c.now = clock_.shown(now);
        c.policy = q_.retry_policy();
        c.destination = [&](const std::string& rcpt) {
            DestinationView d = q_.destination(rcpt, msgs[0].msg);
            d.dead_until = clock_.shown(d.dead_until);
            return d;
        };
        std::vector<RcptWhy> why;
        for (auto& r : v.rcpts) why.push_back(explain(v, r, c));
        return cmd.json ? format_why_json(v, why, c) : format_why_text(v, why, c);
    }
    if (cmd.verb == "show") {
        if (msgs.empty()) return "error: no such message\n";
        MessageView v = shown(msgs[0], clock_);
        v.headers = header_block(q_.body_prefix(v.msgid, kMaxReturnedHeaders + 4));
        return cmd.json ? format_show_json(v, clock_.shown(now)) : format_show_text(v, clock_.shown(now));
    }
    return change(cmd, msgs, now, uid);
}

// warmup list | warmup set ADDRESS --first-used DATE (an address that already sent elsewhere, or one to
// start over). The change is written to the store at once.
std::string AdminOps::warmup(const AdminCommand& cmd, uint64_t uid, uint64_t now) {
    SourcePools& sp = q_.sources();
    if (cmd.sub == "list") return cmd.json ? format_warmup_json(sp, now) : format_warmup_text(sp, now);
    const std::string& address = cmd.addresses.at(0);
    if (cmd.first_day > now / 86400) return "error: --first-used is in the future\n";
    sp.set_first_day(address, cmd.first_day);
    if (int rc = q_.save_state()) return "error: store: " + Store::error_text(rc) + "\n";
    LOG_INFO("event=warmup_set address=%s first_used=%s uid=%llu", address.c_str(), utc_date_text(cmd.first_day).c_str(),
             (unsigned long long)uid);
    bool listed = false;
    for (auto& a : sp.addresses()) listed = listed || a.address == address;
    return "ok: " + address + " counts as first used on " + utc_date_text(cmd.first_day) + " (day " +
           std::to_string(sp.day_number(address, now)) + " today)" + (listed ? "" : "; it is not in source_addresses") + "\n";
}

// suppression list|add|remove. Expired entries are purged first, in the same transaction as the change.
std::string AdminOps::suppression(const AdminCommand& cmd, uint64_t uid, uint64_t now) {
    std::vector<SuppressionView> live;
    std::vector<Op> ops;
    store_.for_each_suppression([&](const std::string& address, const SuppressionRecord& r) {
        if (now < r.until) {
            live.push_back({address, r});
            return;
        }
        Op op;
        op.kind = Op::Kind::delete_suppression;
        op.address = address;
        ops.push_back(std::move(op));
    });
    std::size_t purged = ops.size(), absent = 0;
    std::unordered_set<std::string> listed;
    for (auto& v : live) listed.insert(v.address);
    std::vector<std::string> changed;
    uint64_t until = now + (cmd.ttl ? cmd.ttl : q_.suppression_ttl());
    for (const std::string& a : cmd.addresses) {
        Op op;
        op.address = a;
        if (cmd.sub == "add") {
            op.kind = Op::Kind::put_suppression;
            op.sup = SuppressionRecord{0, now, until, 0, "added by uid " + std::to_string(uid) + " with mtaqueue"};
        } else if (listed.count(a)) {
            op.kind = Op::Kind::delete_suppression;
        } else {
            absent++;
            continue;
        }
        ops.push_back(std::move(op));
        changed.push_back(a);
    }
    if (int rc = ops.empty() ? 0 : store_.apply(ops))
        return "error: queue write failed: " + Store::error_text(rc) + "\n";
    if (purged) LOG_INFO("event=suppression_purged entries=%zu", purged);
    if (cmd.sub == "list") {
        for (auto& v : live) {
            v.rec.since = clock_.shown(v.rec.since);
            v.rec.until = clock_.shown(v.rec.until);
        }
        return cmd.json ? format_suppression_json(live, clock_.shown(now)) : format_suppression_text(live);
    }
    for (const std::string& a : changed)
        LOG_INFO("event=suppression_%s rcpt=<%s> uid=%llu", cmd.sub == "add" ? "added" : "removed",
                 log::safe(a).c_str(), (unsigned long long)uid);
    std::string s = "ok: suppression " + cmd.sub + " " + std::to_string(changed.size()) + " address" +
                    (changed.size() == 1 ? "" : "es");
    if (cmd.sub == "add") s += " until " + utc_text(clock_.shown(until));
    if (absent) s += " (" + std::to_string(absent) + " not on the list)";
    return s + "\n";
}

std::string AdminOps::change(const AdminCommand& cmd, std::vector<MessageView>& msgs, uint64_t now, uint64_t uid) {
    ChangeTally t;
    std::string err = apply_change(cmd, msgs, now, uid, t);
    return err.empty() ? change_text(cmd.verb, t) : err;
}

// The change to these messages in one transaction, then memory follows; "" or the error to answer.
std::string AdminOps::apply_change(const AdminCommand& cmd, std::vector<MessageView>& msgs, uint64_t now, uint64_t uid,
                                   ChangeTally& t) {
    const std::string& verb = cmd.verb;
    std::vector<Op> ops;
    std::set<std::pair<uint64_t, uint32_t>> released;  // were waiting in memory: drop from the active set
    std::vector<std::pair<uint64_t, uint32_t>> deleted_left;  // (msgid, records deleted) of active messages
    std::vector<uint64_t> gone;                          // messages removed entirely
    std::size_t nmsg = 0, nrcpt = 0, busy = 0, later = 0, later_deleted = 0;
    for (auto& v : msgs) {
        bool corrupt = v.msg.state == MessageState::corrupt;
        std::size_t changed = 0, deleted = 0, busy_here = 0;
        for (auto& r : v.rcpts) {
            if (r.inflight) {
                if (!corrupt && rcpt_selected(cmd.filter, r) && q_.mark_inflight(v.msgid, r.index, verb, uid)) {
                    changed++;
                    later++;
                    if (verb == "delete") later_deleted++;
                    continue;
                }
                busy++;
                busy_here++;
                continue;
            }
            if (!corrupt && !rcpt_selected(cmd.filter, r)) continue;
            Op op;
            op.msgid = v.msgid;
            op.index = r.index;
            op.had_schedule = !corrupt && r.rec.scheduled();
            op.old_next = r.rec.next_attempt;
            op.rcpt = r.rec;
            op.kind = Op::Kind::put_recipient;
            if (verb == "delete") {
                op.kind = Op::Kind::delete_recipient;
                deleted++;
            } else if (corrupt) {
                continue;
            } else if (verb == "hold") {
                if (!r.rec.scheduled()) continue;
                op.rcpt.state = RcptState::held;
                op.rcpt.held_by = uid;
                op.rcpt.held_at = now;
            } else if (verb == "release") {
                if (r.rec.state != RcptState::held) continue;
                op.rcpt.state = r.rec.attempts ? RcptState::deferred : RcptState::queued;
                op.rcpt.next_attempt = now;
                op.rcpt.held_by = kNoUid;
                op.rcpt.held_at = 0;
            } else if (verb == "flush") {
                if (!r.rec.scheduled() || r.rec.next_attempt <= now) continue;
                op.rcpt.next_attempt = now;
            } else {  // requeue: back through routing, due now
                if (!r.rec.scheduled()) continue;
                op.rcpt.next_attempt = now;
            }
            if (q_.active(v.msgid, r.index)) released.insert({v.msgid, r.index});
            ops.push_back(std::move(op));
            changed++;
        }
        if (verb == "delete" && deleted == v.rcpts.size() && busy_here == 0) {
            Op del;
            del.kind = Op::Kind::delete_message;
            del.msgid = v.msgid;
            ops.push_back(std::move(del));
            gone.push_back(v.msgid);
            changed++;
        } else if (deleted) {
            deleted_left.emplace_back(v.msgid, uint32_t(deleted));
        }
        if (changed) nmsg++;
        nrcpt += verb == "delete" ? deleted + later_deleted : changed;
        later_deleted = 0;
    }
    if (int rc = ops.empty() ? 0 : store_.apply(ops))
        return "error: queue write failed: " + Store::error_text(rc) + "\n";
    // Memory follows the store only after the commit.
    q_.withdraw(released);
    for (auto& [msgid, n] : deleted_left) q_.records_deleted(msgid, n);
    for (uint64_t msgid : gone) {
        q_.removed(msgid);
        LOG_INFO("event=removed qid=%s reason=\"admin delete\"", format_qid(msgid).c_str());
    }
    if (verb == "flush" || verb == "requeue") q_.revive();
    if (verb != "delete" && verb != "hold") q_.wake_at(now);
    t.nmsg += nmsg;
    t.nrcpt += nrcpt;
    t.busy += busy;
    t.later += later;
    return "";
}

std::string AdminOps::change_text(const std::string& verb, const ChangeTally& t) {
    std::string s = "ok: " + verb + " " + std::to_string(t.nmsg) + " message" + (t.nmsg == 1 ? "" : "s") + ", " +
                    std::to_string(t.nrcpt) + " recipient" + (t.nrcpt == 1 ? "" : "s");
    if (t.later) s += " (" + std::to_string(t.later) + " in flight: " +
                      (verb == "hold" ? "held if" : verb == "delete" ? "deleted if" : "not held if") +
                      " the current attempt defers)";
    if (t.busy) s += " (" + std::to_string(t.busy) + " in flight left alone)";
    LOG_INFO("event=admin_done verb=%s messages=%zu recipients=%zu in_flight=%zu", verb.c_str(), t.nmsg, t.nrcpt, t.busy);
    return s + "\n";
}

}  // namespace mta::queue
