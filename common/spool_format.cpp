// The queue format mark (see spool_format.h).
#include "common/spool_format.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <cstring>

namespace mta {

std::string queue_format_refusal(uint64_t found, const std::string& dir) {
    return "queue format " + std::to_string(found) + " in " + dir + " is newer than this build reads (up to format " +
           std::to_string(kQueueFormat) + "): it was written by a later release; run that release, or move the " +
           "spool aside to start with an empty queue";
}

bool check_queue_format(const std::string& db_dir, std::string& err) {
    struct stat st {};
    if (stat((db_dir + "/data.mdb").c_str(), &st) != 0) return true;  // no queue yet
    MDB_env* env = nullptr;
    if (mdb_env_create(&env) != 0) return true;
    int rc = mdb_env_set_maxdbs(env, 16);
    if (!rc) rc = mdb_env_open(env, db_dir.c_str(), MDB_RDONLY | MDB_NOLOCK, 0600);
    MDB_txn* txn = nullptr;
    MDB_dbi meta = 0;
    if (!rc) rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "meta", 0, &meta);
    uint64_t format = kQueueFormatUnmarked;
    if (!rc) {
        MDB_val k{kMetaFormatKey.size(), const_cast<char*>(kMetaFormatKey.data())}, v{};
        int g = mdb_get(txn, meta, &k, &v);
        if (g == 0 && v.mv_size == 8) {
            format = 0;
            for (int i = 7; i >= 0; i--) format = format << 8 | static_cast<const unsigned char*>(v.mv_data)[i];
        }
    }
    // Anything else (no meta db yet, a damaged or unreadable file, a bad mark) is not mtad's to judge:
    // mta-queue opens the database itself, refuses what it cannot use and says why, while mtad runs on.
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(env);
    if (format <= kQueueFormat) return true;
    err = queue_format_refusal(format, db_dir);
    return false;
}

}  // namespace mta
