// Table publishing: mta-queue runs chrooted into <spool_dir>/queue and cannot open the admin's tables,
// so mtad copies each table the queue needs (transport_map, smtp_tls_policy_map, destination_policy,
// source_addresses, sender_source_pools) into
// <spool_dir>/queue/tables/<key>.lmdb (root-owned, dir 0755, file 0644) by temp file + rename, at start,
// on reload and when a periodic stat of the source (dev, inode, mtime, size) sees a change. The queue
// reopens a copy that was renamed over (table::Table::replaced()). A missing or unreadable source
// removes the copy, so the queue defers the mail that needs it instead of routing by a stale table.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/fd.h"

namespace mta::master {

class TablePublisher {
public:
    static constexpr int kCheckSeconds = 2;  // how often mtad stats the sources

    // Sets the tables to publish from `cfg` (start and reload); call sync() after it.
    void configure(const Config& cfg);
    // Publishes every changed source, removes copies of unset or vanished ones. Logs each change once.
    void sync();
    // libevent callback for the periodic check; `arg` is the TablePublisher.
    static void on_timer(int, short, void* arg);

private:
    struct Entry {
        explicit Entry(const char* k) : key(k) {}
        const char* key;  // config key = published base name
        std::string source;
        bool published = false;
        dev_t dev = 0;
        ino_t ino = 0;
        int64_t mtime_ns = 0;
        off_t size = -1;
        std::string problem;  // last error logged, to log each distinct one once
    };
    bool open_dir();
    void publish(Entry& e);
    void unpublish(Entry& e, const std::string& why);
    void fail(Entry& e, const std::string& why);

    std::string dir_;  // <spool_dir>/queue/tables
    UniqueFd dir_fd_;
    std::vector<Entry> entries_{Entry("transport_map"), Entry("smtp_tls_policy_map"), Entry("destination_policy"),
                                Entry("source_addresses"), Entry("sender_source_pools")};
};

}  // namespace mta::master
