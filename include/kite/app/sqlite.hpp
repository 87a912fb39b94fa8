#pragma once
/// @file kite/app/sqlite.hpp
/// A small RAII layer over SQLite 3, the embedded database under kite's LLM caches and exchange
/// logs: a connection, prepared statements, transactions and versioned schemas. Every failure
/// is a kite::io_error (the file could not be opened or written) or kite::format_error (the
/// file is not a database kite can use) naming the file and SQLite's own message.
///
///   kite::app::sql::database db("cache.sqlite");          // WAL mode, busy timeout 5 s
///   db.migrate("exact_cache", {"CREATE TABLE ..."});       // steps[v] takes version v to v + 1
///   auto st = db.prepare("SELECT response FROM exact_cache WHERE key = ?1");
///   st.bind(1, key);
///   if (st.step()) use(st.text(0));
///   { auto tx = db.transaction(); ...; tx.commit(); }      // rolled back unless committed
///
/// Durability: journal_mode = WAL and synchronous = NORMAL by default. A committed transaction
/// survives the process being killed (SIGKILL, a crash): SQLite's WAL is in the operating
/// system's page cache the moment commit returns. A power cut may lose the last transactions
/// under NORMAL; durability::full (synchronous = FULL) fsyncs at every commit and loses none.
/// Thread safety: one database per thread (SQLite's default serialized mode makes sharing safe,
/// but kite's writers each hold their own connection).
/// Needs SQLite 3 (link kite::app).

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "kite/core/error.hpp"

namespace kite::app::sql {

/// What a commit guarantees (see the file comment).
enum class durability { normal, full };

/// How a database is opened.
struct open_options {
    bool read_only = false;
    bool create = true;                     ///< create the file when it does not exist
    bool wal = true;                        ///< journal_mode = WAL (readers never block the writer)
    durability sync = durability::normal;
    int busy_timeout_ms = 5000;             ///< wait this long for another connection's lock
};

namespace detail {
[[noreturn]] inline void fail(sqlite3* db, int rc, std::string_view what, const std::string& where) {
    std::string msg = std::string(what) + ": " + where + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT || rc == SQLITE_FORMAT) throw format_error(msg);
    throw io_error(msg);
}
}  // namespace detail

/// A prepared statement (move-only). Parameters are numbered from 1, columns from 0.
class statement {
public:
    statement() = default;
    statement(sqlite3* db, std::string_view sql, std::string where) : db_(db), where_(std::move(where)) {
        const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &st_, nullptr);
        if (rc != SQLITE_OK) detail::fail(db, rc, "sqlite prepare", where_ + " [" + std::string(sql) + "]");
    }
    statement(statement&& o) noexcept : db_(o.db_), st_(std::exchange(o.st_, nullptr)), where_(std::move(o.where_)) {}
    statement& operator=(statement&& o) noexcept {
        if (this != &o) {
            sqlite3_finalize(st_);
            db_ = o.db_;
            st_ = std::exchange(o.st_, nullptr);
            where_ = std::move(o.where_);
        }
        return *this;
    }
    statement(const statement&) = delete;
    statement& operator=(const statement&) = delete;
    ~statement() { sqlite3_finalize(st_); }

    statement& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(st_, i, v)); }
    statement& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
    statement& bind(int i, std::uint64_t v) { return bind(i, static_cast<std::int64_t>(v)); }
    statement& bind(int i, double v) { return check(sqlite3_bind_double(st_, i, v)); }
    statement& bind(int i, std::nullptr_t) { return check(sqlite3_bind_null(st_, i)); }
    /// Text (SQLite copies it).
    statement& bind(int i, std::string_view v) {
        return check(sqlite3_bind_text64(st_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    }
    statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    /// A blob (SQLite copies it).
    statement& bind_blob(int i, std::span<const std::byte> v) {
        return check(sqlite3_bind_blob64(st_, i, v.empty() ? "" : static_cast<const void*>(v.data()), v.size(),
                                         SQLITE_TRANSIENT));
    }

    /// Runs to the next row: true while there is one, false once the statement is done.
    bool step() {
        const int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        detail::fail(db_, rc, "sqlite step", where_);
    }
    /// Runs a statement that returns no rows.
    void run() {
        while (step()) {
        }
        reset();
    }
    /// Ready to run again (bindings are kept; clear_bindings() drops them).
    statement& reset() {
        sqlite3_reset(st_);
        return *this;
    }
    statement& clear_bindings() {
        sqlite3_clear_bindings(st_);
        return *this;
    }

    bool is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
    std::int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }
    double real(int col) const { return sqlite3_column_double(st_, col); }
    /// Text of a column (valid until the next step or reset).
    std::string_view text(int col) const {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
        return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(st_, col))) : std::string_view{};
    }
    std::span<const std::byte> blob(int col) const {
        const void* p = sqlite3_column_blob(st_, col);
        return p ? std::span<const std::byte>(static_cast<const std::byte*>(p),
                                              static_cast<std::size_t>(sqlite3_column_bytes(st_, col)))
                 : std::span<const std::byte>{};
    }

private:
    statement& check(int rc) {
        if (rc != SQLITE_OK) detail::fail(db_, rc, "sqlite bind", where_);
        return *this;
    }

    sqlite3* db_ = nullptr;
    sqlite3_stmt* st_ = nullptr;
    std::string where_;
};

class database;

/// A transaction (BEGIN IMMEDIATE: the write lock is taken at once). Rolled back by the
/// destructor unless commit() ran.
class transaction {
public:
    explicit transaction(database& db);
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    ~transaction();
    void commit();

private:
    database* db_;
    bool open_ = true;
};

/// A connection to one database file (move-only).
class database {
public:
    database() = default;
    explicit database(const std::filesystem::path& file, const open_options& opt = {}) : path_(file.string()) {
        int flags = opt.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
        if (!opt.read_only && opt.create) flags |= SQLITE_OPEN_CREATE;
        flags |= SQLITE_OPEN_NOMUTEX;
        const int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
        if (rc != SQLITE_OK) {
            const std::string msg = std::string("sqlite open: ") + path_ + ": " +
                                    (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
            sqlite3_close(db_);
            db_ = nullptr;
            throw io_error(msg);
        }
        try {
            sqlite3_busy_timeout(db_, opt.busy_timeout_ms);
            // Reading the schema fails on a file that is not a database (format_error).
            exec("SELECT count(*) FROM sqlite_master");
            if (!opt.read_only) {
                if (opt.wal) exec("PRAGMA journal_mode = WAL");
                exec(opt.sync == durability::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
            }
            exec("PRAGMA foreign_keys = ON");
        } catch (...) {
            sqlite3_close(db_);
            db_ = nullptr;
            throw;
        }
    }
    database(database&& o) noexcept : db_(std::exchange(o.db_, nullptr)), path_(std::move(o.path_)) {}
    database& operator=(database&& o) noexcept {
        if (this != &o) {
            close();
            db_ = std::exchange(o.db_, nullptr);
            path_ = std::move(o.path_);
        }
        return *this;
    }
    database(const database&) = delete;
    database& operator=(const database&) = delete;
    ~database() { close(); }

    bool is_open() const noexcept { return db_ != nullptr; }
    const std::string& path() const noexcept { return path_; }
    sqlite3* handle() const noexcept { return db_; }

    /// Runs one or more statements that return no rows.
    void exec(std::string_view sql) {
        require_open();
        const std::string s(sql);
        char* err = nullptr;
        const int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
        if (rc != SQLITE_OK) {
            const std::string msg = err ? err : sqlite3_errstr(rc);
            sqlite3_free(err);
            const std::string full = "sqlite exec: " + path_ + ": " + msg + " [" + s + "]";
            if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT || rc == SQLITE_FORMAT) throw format_error(full);
            throw io_error(full);
        }
    }
    statement prepare(std::string_view sql) {
        require_open();
        return statement(db_, sql, path_);
    }
    transaction begin() { return transaction(*this); }

    /// rowid of the last INSERT on this connection.
    std::int64_t last_insert_id() const noexcept { return sqlite3_last_insert_rowid(db_); }
    /// Rows changed by the last INSERT / UPDATE / DELETE.
    std::int64_t changes() const noexcept { return sqlite3_changes64(db_); }

    /// The schema version of `component` (0 when it has no tables yet), kept in kite_schema.
    int schema_version(std::string_view component) {
        exec("CREATE TABLE IF NOT EXISTS kite_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)");
        auto st = prepare("SELECT version FROM kite_schema WHERE component = ?1");
        st.bind(1, component);
        return st.step() ? static_cast<int>(st.int64(0)) : 0;
    }

    /// Brings `component`'s tables to `version`: steps[v] (a script) takes version v to v + 1,
    /// each in its own transaction with the version bump. A file written by a newer kite
    /// (version above steps.size()) is refused with a format_error rather than misread.
    void migrate(std::string_view component, std::initializer_list<std::string_view> steps) {
        const int target = static_cast<int>(steps.size());
        const int have = schema_version(component);
        KITE_REQUIRE(have <= target, format_error, "sqlite: ", path_, ": ", component, " schema version ", have,
                     "; this build reads versions up to ", target);
        int v = 0;
        for (std::string_view script : steps) {
            if (v++ < have) continue;
            auto tx = begin();
            exec(script);
            auto st = prepare("INSERT INTO kite_schema (component, version) VALUES (?1, ?2) "
                              "ON CONFLICT(component) DO UPDATE SET version = excluded.version");
            st.bind(1, component).bind(2, v);
            st.run();
            tx.commit();
        }
    }

    /// PRAGMA integrity_check: "ok" for a sound file, SQLite's findings otherwise.
    std::string integrity_check() {
        auto st = prepare("PRAGMA integrity_check");
        std::string out;
        while (st.step()) {
            if (!out.empty()) out += "; ";
            out += st.text(0);
        }
        return out;
    }

    void close() noexcept {
        if (db_) sqlite3_close_v2(db_);
        db_ = nullptr;
    }

private:
    void require_open() const {
        KITE_REQUIRE(db_ != nullptr, io_error, "sqlite: the database is not open");
    }

    sqlite3* db_ = nullptr;
    std::string path_;
};

inline transaction::transaction(database& db) : db_(&db) { db_->exec("BEGIN IMMEDIATE"); }
inline transaction::~transaction() {
    if (open_) {
        try {
            db_->exec("ROLLBACK");
        } catch (...) {
        }
    }
}
inline void transaction::commit() {
    KITE_REQUIRE(open_, invalid_argument, "sqlite transaction: commit after commit");
    db_->exec("COMMIT");
    open_ = false;
}

/// Seconds since the Unix epoch (the time column of kite's tables).
inline double unix_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace kite::app::sql
