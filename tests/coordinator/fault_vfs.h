// Test helper: a SQLite VFS ("qshard-faults") over the default one that fails on demand, for
// the journal's fault tests. The journal's files go through SQLite's own I/O, not core/env.h
// (SQLite needs random-access writes and WAL shared memory, which Env does not offer), so the
// faults are injected one layer down, with the same meaning as FaultInjectionEnv's: a write
// that fails (EIO), a full disk (SQLITE_FULL), an fsync that fails, and a crash — the process
// exits on the Nth write, in the middle of whatever transaction it was in.
#pragma once

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace qshard::testing {

class FaultVfs {
 public:
  static constexpr char kName[] = "qshard-faults";

  // Registers the VFS once (not as the default); returns its name for Journal::Open.
  static const char* Register() {
    static const bool registered = [] {
      real_ = sqlite3_vfs_find(nullptr);
      vfs_ = *real_;
      vfs_.zName = kName;
      vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
      vfs_.xOpen = Open;
      vfs_.xDelete = [](sqlite3_vfs*, const char* name, int sync) { return real_->xDelete(real_, name, sync); };
      vfs_.xAccess = [](sqlite3_vfs*, const char* name, int flags, int* out) {
        return real_->xAccess(real_, name, flags, out);
      };
      vfs_.xFullPathname = [](sqlite3_vfs*, const char* name, int n, char* out) {
        return real_->xFullPathname(real_, name, n, out);
      };
      return sqlite3_vfs_register(&vfs_, /*makeDflt=*/0) == SQLITE_OK;
    }();
    return registered ? kName : nullptr;
  }

  // Faults, counted over every file of the VFS; each is disarmed by Reset().
  static void FailWritesAfter(int writes, int code) {  // code: SQLITE_IOERR_WRITE or SQLITE_FULL
    writes_left_ = writes;
    write_error_ = code;
  }
  static void FailSyncs() { fail_syncs_ = true; }
  static void ExitAtWrite(int n) { exit_at_write_ = n; }  // in a child process: _exit(0) there
  static void Reset() {
    writes_left_ = -1;
    fail_syncs_ = false;
    exit_at_write_ = -1;
    writes_ = 0;
  }
  static int writes() { return writes_; }

 private:
  // Our file: the methods table first (what SQLite sees), then the real file right after it.
  struct File {
    sqlite3_file base;
    sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  };
  static sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real(); }

  static int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
    File* ours = reinterpret_cast<File*>(file);
    ours->base.pMethods = nullptr;
    const int rc = real_->xOpen(real_, name, ours->real(), flags, out_flags);
    if (rc != SQLITE_OK || ours->real()->pMethods == nullptr) return rc;
    static const sqlite3_io_methods methods = Methods();
    ours->base.pMethods = &methods;
    return SQLITE_OK;
  }

  // Each call goes to the real file's own methods (the default VFS uses more than one table),
  // with write, truncate and sync able to fail.
  static const sqlite3_io_methods* M(sqlite3_file* f) { return Real(f)->pMethods; }
  static sqlite3_io_methods Methods() {
    sqlite3_io_methods m{};
    m.iVersion = 3;
    m.xClose = [](sqlite3_file* f) { return M(f)->xClose(Real(f)); };
    m.xRead = [](sqlite3_file* f, void* out, int n, sqlite3_int64 at) { return M(f)->xRead(Real(f), out, n, at); };
    m.xWrite = [](sqlite3_file* f, const void* in, int n, sqlite3_int64 at) {
      const int count = ++writes_;
      if (exit_at_write_ > 0 && count >= exit_at_write_) _exit(0);  // a crash mid-transaction
      if (writes_left_ == 0) return write_error_.load();
      if (writes_left_ > 0) --writes_left_;
      return M(f)->xWrite(Real(f), in, n, at);
    };
    m.xTruncate = [](sqlite3_file* f, sqlite3_int64 size) {
      return writes_left_ == 0 ? write_error_.load() : M(f)->xTruncate(Real(f), size);
    };
    m.xSync = [](sqlite3_file* f, int flags) { return fail_syncs_ ? SQLITE_IOERR_FSYNC : M(f)->xSync(Real(f), flags); };
    m.xFileSize = [](sqlite3_file* f, sqlite3_int64* size) { return M(f)->xFileSize(Real(f), size); };
    m.xLock = [](sqlite3_file* f, int lock) { return M(f)->xLock(Real(f), lock); };
    m.xUnlock = [](sqlite3_file* f, int lock) { return M(f)->xUnlock(Real(f), lock); };
    m.xCheckReservedLock = [](sqlite3_file* f, int* out) { return M(f)->xCheckReservedLock(Real(f), out); };
    m.xFileControl = [](sqlite3_file* f, int op, void* arg) { return M(f)->xFileControl(Real(f), op, arg); };
    m.xSectorSize = [](sqlite3_file* f) { return M(f)->xSectorSize(Real(f)); };
    m.xDeviceCharacteristics = [](sqlite3_file* f) { return M(f)->xDeviceCharacteristics(Real(f)); };
    // Shared memory and memory mapping, where the real file has them (the database file in WAL
    // mode); SQLite asks for them only there.
    m.xShmMap = [](sqlite3_file* f, int page, int size, int extend, void volatile** out) {
      return M(f)->iVersion >= 2 ? M(f)->xShmMap(Real(f), page, size, extend, out) : SQLITE_IOERR_SHMMAP;
    };
    m.xShmLock = [](sqlite3_file* f, int offset, int n, int flags) {
      return M(f)->iVersion >= 2 ? M(f)->xShmLock(Real(f), offset, n, flags) : SQLITE_IOERR_SHMLOCK;
    };
    m.xShmBarrier = [](sqlite3_file* f) {
      if (M(f)->iVersion >= 2) M(f)->xShmBarrier(Real(f));
    };
    m.xShmUnmap = [](sqlite3_file* f, int del) { return M(f)->iVersion >= 2 ? M(f)->xShmUnmap(Real(f), del) : SQLITE_OK; };
    m.xFetch = [](sqlite3_file* f, sqlite3_int64 at, int n, void** out) {
      if (M(f)->iVersion >= 3) return M(f)->xFetch(Real(f), at, n, out);
      *out = nullptr;
      return SQLITE_OK;
    };
    m.xUnfetch = [](sqlite3_file* f, sqlite3_int64 at, void* p) {
      return M(f)->iVersion >= 3 ? M(f)->xUnfetch(Real(f), at, p) : SQLITE_OK;
    };
    return m;
  }

  static inline sqlite3_vfs* real_ = nullptr;
  static inline sqlite3_vfs vfs_{};
  static inline std::atomic<int> writes_left_{-1};
  static inline std::atomic<int> write_error_{SQLITE_IOERR_WRITE};
  static inline std::atomic<bool> fail_syncs_{false};
  static inline std::atomic<int> exit_at_write_{-1};
  static inline std::atomic<int> writes_{0};
};

}  // namespace qshard::testing
