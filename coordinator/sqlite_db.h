// A thin RAII layer over the SQLite C API for the coordinator's journal: one connection,
// prepared statements with positional binds, and every SQLite error turned into a Status that
// names the database file and the statement's purpose.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qshard {

class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt, std::string what) : db_(db), stmt_(stmt), what_(std::move(what)) {}
  ~SqliteStatement() { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Binds are 1-based, as in SQLite. An empty text binds NULL when `null_if_empty`.
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, const std::string& value, bool null_if_empty = false);
  SqliteStatement& BindBlob(int index, const std::string& bytes);

  // True while a row is available; false when done.
  absl::StatusOr<bool> Step();
  // Steps to the end; for statements that return no rows.
  absl::Status Run();

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const;  // NULL reads as ""

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string what_;
};

class SqliteDb {
 public:
  // `vfs`: the SQLite VFS by name ("" = the default); tests pass a fault-injecting one.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path, const std::string& vfs = "");
  ~SqliteDb() { sqlite3_close(db_); }
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements that return nothing; `what` names them in errors.
  absl::Status Exec(const std::string& sql, const std::string& what);
  absl::StatusOr<std::unique_ptr<SqliteStatement>> Prepare(const std::string& sql, const std::string& what);
  int64_t LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
  const std::string& path() const { return path_; }

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

// One transaction, rolled back unless committed: BEGIN IMMEDIATE takes the write lock at
// once, so a read-check-write inside it cannot race another writer.
class SqliteTransaction {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteTransaction>> Begin(SqliteDb& db);
  ~SqliteTransaction();
  absl::Status Commit();

 private:
  explicit SqliteTransaction(SqliteDb& db) : db_(db) {}
  SqliteDb& db_;
  bool done_ = false;
};

}  // namespace qshard
