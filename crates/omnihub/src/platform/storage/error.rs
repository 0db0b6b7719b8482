//! Storage errors, and the one place database error codes (PostgreSQL's
//! SQLSTATE, SQLite's result codes) are read and mapped to what they mean
//! to the hub.

/// Errors from the storage layer that are not a domain outcome.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The disk (or the database's quota) is full: SQLite's `SQLITE_FULL`,
    /// PostgreSQL's SQLSTATE 53100, or `ENOSPC`. Nothing of the write was
    /// committed; it can succeed once space returns (docs/operations.md).
    #[error("the database's storage is full: {0}")]
    Full(String),
    #[error("the store is shutting down")]
    Closed,
    /// A coalescer's queue was full (see `coalescer`): nothing was done;
    /// the request may be sent again after a moment.
    #[error("too many writes are waiting")]
    Busy,
    #[error(
        "the database schema has migrations this omnihub does not know (versions {unknown:?}; \
         it knows up to {known}): a newer omnihub migrated it. Run that version or a newer one; \
         this binary refuses to start rather than misread the data"
    )]
    UnknownSchema { unknown: Vec<i64>, known: i64 },
}

impl From<sqlx::Error> for StoreError {
    /// Classifies on the way in, so a full disk is [`StoreError::Full`]
    /// wherever it surfaces (an operation's statement, the outbox append,
    /// BEGIN or COMMIT).
    fn from(error: sqlx::Error) -> Self {
        if is_disk_full(&error) {
            StoreError::Full(error.to_string())
        } else {
            StoreError::Database(error)
        }
    }
}

/// SQLite's primary result code for "database or disk is full".
const SQLITE_FULL: i64 = 13;
/// PostgreSQL's SQLSTATE `disk_full`.
const POSTGRES_DISK_FULL: &str = "53100";

/// True for SQLite's `SQLITE_FULL` (the primary code, whatever the extended
/// one), PostgreSQL's `disk_full`, and an I/O error `ENOSPC` (a write's
/// 507, a backup's "disk full").
pub fn is_disk_full(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => {
            let Some(code) = e.code() else {
                return false;
            };
            if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Extended codes keep the primary one in the low byte.
                code.parse::<i64>().is_ok_and(|n| n & 0xff == SQLITE_FULL)
            } else {
                code == POSTGRES_DISK_FULL
            }
        }
        sqlx::Error::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

impl StoreError {
    /// The error to give each caller of a batch that failed as a whole
    /// (the writer cannot clone a database error): a full disk stays
    /// [`StoreError::Full`], so every caller gets the same clear answer;
    /// anything else is reported as it was.
    pub fn for_each_caller(&self) -> StoreError {
        match self {
            StoreError::Full(message) => StoreError::Full(message.clone()),
            StoreError::Closed => StoreError::Closed,
            StoreError::Busy => StoreError::Busy,
            other => StoreError::Corrupt(other.to_string()),
        }
    }

    /// True when no write can succeed for now (the store is closing, the
    /// disk is full): a batch that failed with it is not worth splitting
    /// to find the operation at fault.
    pub fn fails_every_write(&self) -> bool {
        matches!(self, StoreError::Closed | StoreError::Full(_))
    }

    /// True when the error is a unique-constraint violation (SQLSTATE 23505 on
    /// PostgreSQL, extended code 2067/1555 on SQLite).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => matches!(
                e.code().as_deref(),
                Some("23505") | Some("2067") | Some("1555")
            ),
            _ => false,
        }
    }

    /// True when PostgreSQL aborted the statement to resolve a deadlock
    /// (SQLSTATE 40P01) or a serialization conflict (40001) between
    /// transactions running in parallel (writer lanes, nodes): the operation
    /// was rolled back, nothing of it was written, and running the request
    /// again can succeed.
    pub fn is_transient_conflict(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01") | Some("40001"))
            }
            _ => false,
        }
    }
}

// Every database error code the hub reads is read above and here: SQLSTATE
// (PostgreSQL) and SQLite result codes, mapped to what they mean to us.

/// SQLite's write failed (SQLITE_IOERR_WRITE, 778: e.g. EFBIG past a file
/// size limit, EDQUOT): a backup's "write failed".
pub fn is_write_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e.code().as_deref() == Some("778"),
        _ => false,
    }
}
