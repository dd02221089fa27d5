// The routing tables mta-queue consults (transport_map, smtp_tls_policy_map, destination_policy,
// source_addresses, sender_source_pools): read-only LMDB copies that
// mtad publishes into the queue's chroot (tables/<key>.lmdb, master/publish.cpp), because the admin's
// files are out of reach once the queue has chrooted. A copy replaced by rename is reopened on the next
// refresh(); a configured table that cannot be opened makes route() defer (4.3.0), never misroute.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/routing.h"
#include "common/table.h"

namespace mta::queue {

class RouteTableSet {
public:
    explicit RouteTableSet(std::string dir = "tables") : dir_(std::move(dir)) {}
    // Which tables are wanted (after start and on every reload); opens them at once.
    void configure(const Config& cfg);
    // Reopens tables whose published copy was replaced or that were missing. Cheap (an fstat and a
    // stat per table): called once per batch of lookups.
    void refresh();
    // Lookup functions bound to the tables open now; valid until the next configure()/refresh().
    RouteTables tables() const;
    // source_addresses, read whole (SourcePools): the open table (nullptr: not configured or unusable,
    // see sources_error()) and a number that changes whenever a new copy is opened.
    const table::Table* sources() const { return sources_.table.get(); }
    const std::string& sources_error() const { return sources_.error; }
    uint64_t sources_generation() const { return sources_generation_; }

private:
    struct Slot {
        const char* key;          // config key, also the published file's base name
        std::string source;       // the admin's path ("" = not configured)
        std::unique_ptr<table::Table> table;
        std::string error;        // why it is unusable ("" when open or not configured)
    };
    void open(Slot& s);

    std::string dir_;
    Slot transport_{"transport_map", {}, nullptr, {}};
    Slot tls_policy_{"smtp_tls_policy_map", {}, nullptr, {}};
    Slot destination_policy_{"destination_policy", {}, nullptr, {}};
    Slot sender_pools_{"sender_source_pools", {}, nullptr, {}};
    Slot sources_{"source_addresses", {}, nullptr, {}};
    uint64_t sources_generation_ = 0;
    std::vector<std::pair<Slot*, std::string Config::*>> slots();
};

}  // namespace mta::queue
