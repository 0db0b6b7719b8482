//! Placeholder lists for statements built at run time (multi-row inserts and
//! `IN (…)` lists), numbered `$1…` as both backends accept; and the
//! PostgreSQL advisory locks and `NOTIFY` channel, namespaced by schema.

/// Takes the advisory lock `$1` of the connection's schema until the
/// transaction ends. Lock ids are database-wide, so the id is hashed with
/// the schema: two hubs on two schemas of one database never share a lock.
pub const PG_XACT_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended(coalesce(current_schema(), ''), $1))";
/// The session-level form of [`PG_XACT_LOCK`] and its release.
pub const PG_SESSION_LOCK: &str =
    "SELECT pg_advisory_lock(hashtextextended(coalesce(current_schema(), ''), $1))";
pub const PG_SESSION_UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtextextended(coalesce(current_schema(), ''), $1))";
/// The `NOTIFY` channel of the connection's schema: `omnihub_events_` and
/// the MD5 of the schema name (channel names are database-wide too, and at
/// most 63 bytes).
pub const PG_EVENTS_CHANNEL: &str = "'omnihub_events_' || md5(coalesce(current_schema(), ''))";

/// `$first, $first+1, …` for `count` parameters.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends `($1, …, $columns), (…)` for `rows` rows of `columns` parameters.
pub fn push_rows(sql: &mut String, rows: usize, columns: usize) {
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        sql.push_str(&placeholders(row * columns + 1, columns));
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_run_on_across_rows() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        let mut sql = String::from("VALUES ");
        push_rows(&mut sql, 2, 3);
        assert_eq!(sql, "VALUES ($1, $2, $3),($4, $5, $6)");
    }
}
