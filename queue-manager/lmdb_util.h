// RAII owners for LMDB handles and small helpers around MDB_val. The queue is the only user of LMDB
// in the project (the table tool has its own), so these live here.
#pragma once
#include <lmdb.h>

#include <memory>
#include <string_view>

namespace mta::queue {

struct EnvClose { void operator()(MDB_env* e) const { mdb_env_close(e); } };
struct CursorClose { void operator()(MDB_cursor* c) const { mdb_cursor_close(c); } };
using EnvPtr = std::unique_ptr<MDB_env, EnvClose>;
using CursorPtr = std::unique_ptr<MDB_cursor, CursorClose>;

// A transaction that aborts unless committed.
class Txn {
public:
    Txn(MDB_env* env, unsigned flags, int& rc) { rc = mdb_txn_begin(env, nullptr, flags, &t_); if (rc) t_ = nullptr; }
    ~Txn() { if (t_) mdb_txn_abort(t_); }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    MDB_txn* get() const { return t_; }
    int commit() { MDB_txn* t = t_; t_ = nullptr; return mdb_txn_commit(t); }
private:
    MDB_txn* t_ = nullptr;
};

inline MDB_val to_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view from_val(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

inline CursorPtr open_cursor(MDB_txn* t, MDB_dbi d, int& rc) {
    MDB_cursor* c = nullptr;
    rc = mdb_cursor_open(t, d, &c);
    return CursorPtr(rc ? nullptr : c);
}

// 0 with `v` pointing into the map, MDB_NOTFOUND, or an LMDB error.
inline int db_get(MDB_txn* t, MDB_dbi d, std::string_view k, MDB_val& v) {
    MDB_val key = to_val(k);
    return mdb_get(t, d, &key, &v);
}
inline int db_put(MDB_txn* t, MDB_dbi d, std::string_view k, std::string_view v) {
    MDB_val key = to_val(k), val = to_val(v);
    return mdb_put(t, d, &key, &val, 0);
}
// Deleting what is already gone is fine: a batch only has to reach its target state.
inline int db_del(MDB_txn* t, MDB_dbi d, std::string_view k) {
    MDB_val key = to_val(k);
    int rc = mdb_del(t, d, &key, nullptr);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

// What a walk() visitor returns to end the walk early without an error.
inline constexpr int kWalkStop = MDB_LAST_ERRCODE + 1;

// Visits the cursor's entries in key order, from the first key or, when `from` is not empty, from the
// first key >= from. fn(key, value) returns 0 to go on, kWalkStop to stop, or an error code to stop
// with. Returns 0 at the end or on kWalkStop, else the error (the visitor's or LMDB's). The visitor
// may delete the current entry with mdb_cursor_del.
template <class Fn>
int walk(MDB_cursor* c, std::string_view from, Fn&& fn) {
    MDB_val k = to_val(from), v;
    int rc = mdb_cursor_get(c, &k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (int r = fn(from_val(k), from_val(v))) return r == kWalkStop ? 0 : r;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

}  // namespace mta::queue
