// Opening, reopening and binding the queue's routing tables (see route_tables.h).
#include "queue-manager/route_tables.h"

#include "common/log.h"

namespace mta::queue {

std::vector<std::pair<RouteTableSet::Slot*, std::string Config::*>> RouteTableSet::slots() {
    return {{&transport_, &Config::transport_map}, {&tls_policy_, &Config::smtp_tls_policy_map},
            {&destination_policy_, &Config::destination_policy}, {&sender_pools_, &Config::sender_source_pools},
            {&sources_, &Config::source_addresses}};
}

void RouteTableSet::configure(const Config& cfg) {
    for (auto [slot, member] : slots()) {
        const std::string& source = cfg.*member;
        if (slot->source == source && (slot->table || !slot->error.empty())) continue;
        if (slot == &sources_) sources_generation_++;  // also when it goes away
        slot->source = source;
        slot->table.reset();
        slot->error.clear();
        if (!slot->source.empty()) open(*slot);
    }
}

void RouteTableSet::open(Slot& s) {
    std::string path = dir_ + "/" + s.key + ".lmdb", err;
    s.table = table::Table::open(path, err);
    if (&s == &sources_) sources_generation_++;
    if (s.table) {
        if (!s.error.empty()) LOG_INFO("event=table_available table=%s", s.key);
        s.error.clear();
        LOG_DEBUG("event=table_opened table=%s path=%s", s.key, log::safe(path).c_str());
        return;
    }
    std::string why = "no usable copy of " + s.source + " published by mtad (" + err + ")";
    if (why != s.error)  // once per distinct problem: refresh() retries on every batch
        LOG_ERROR("event=table_unavailable table=%s reason=\"%s\" effect=\"mail needing it is deferred\"", s.key,
                  log::safe(why).c_str());
    s.error = why;
}

void RouteTableSet::refresh() {
    for (auto [s, member] : slots()) {
        if (s->source.empty()) continue;
        if (!s->table || s->table->replaced()) {
            s->table.reset();
            open(*s);
        }
    }
}

RouteTables RouteTableSet::tables() const {
    RouteTables t;
    auto bind = [](const Slot& s, TableLookup& lookup, std::string& error) {
        if (s.source.empty()) return;
        if (!s.table) {
            error = "the table could not be opened";
            return;
        }
        const table::Table* tab = s.table.get();
        lookup = [tab](std::string_view k) { return tab->lookup(k); };
    };
    bind(transport_, t.transport, t.transport_error);
    bind(tls_policy_, t.tls_policy, t.tls_policy_error);
    bind(destination_policy_, t.destination_policy, t.destination_policy_error);
    bind(sender_pools_, t.sender_pools, t.sender_pools_error);
    return t;
}

}  // namespace mta::queue
