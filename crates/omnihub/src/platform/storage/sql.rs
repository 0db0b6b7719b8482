//! The one home of SQL built at run time: placeholder lists for multi-row
//! inserts and `IN (…)` lists (`$1…`, which both backends accept, or per
//! dialect with `?` on SQLite where binding by name costs time), statement
//! sizes that keep the prepared-statement caches small, and the PostgreSQL
//! advisory locks and `NOTIFY` channel, namespaced by schema.

use super::Dialect;

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

/// Binds `values` in order: the values of an `IN (…)` list written with
/// [`placeholders`].
pub fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = query.bind(value.as_str());
    }
    query
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

/// Splits `total` rows into statement sizes: full chunks of `max` (a power
/// of two), then powers of two, so that a connection's prepared-statement
/// cache holds a handful of shapes instead of one per row count.
pub fn chunk_sizes(total: usize, max: usize) -> Vec<usize> {
    let max = max.max(1);
    let mut sizes = vec![max; total / max];
    let mut rest = total % max;
    while rest > 0 {
        // The largest power of two not above `rest`.
        let size = 1 << (usize::BITS - 1 - rest.leading_zeros());
        sizes.push(size);
        rest -= size;
    }
    sizes
}

/// `count` parameters from `$first` (`?` on SQLite), comma-separated, in
/// parentheses.
pub fn value_tuple(dialect: Dialect, first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 5 + 2);
    out.push('(');
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        match dialect {
            Dialect::Sqlite => out.push('?'),
            Dialect::Postgres => {
                out.push('$');
                out.push_str(&(first + i).to_string());
            }
        }
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::storage::Dialect;

    #[test]
    fn numbers_run_on_across_rows() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        let mut sql = String::from("VALUES ");
        push_rows(&mut sql, 2, 3);
        assert_eq!(sql, "VALUES ($1, $2, $3),($4, $5, $6)");
    }

    #[test]
    fn chunk_sizes_cover_every_row_in_few_shapes() {
        for max in [1, 7, 20, 64] {
            for total in 0..300 {
                let sizes = chunk_sizes(total, max);
                assert_eq!(
                    sizes.iter().sum::<usize>(),
                    total,
                    "{total} rows, chunks of {max}"
                );
                assert!(sizes.iter().all(|s| *s >= 1 && *s <= max));
            }
        }
        assert_eq!(chunk_sizes(150, 64), vec![64, 64, 16, 4, 2]);
    }

    #[test]
    fn value_tuples_per_dialect() {
        assert_eq!(value_tuple(Dialect::Sqlite, 8, 3), "(?, ?, ?)");
        assert_eq!(value_tuple(Dialect::Postgres, 8, 3), "($8, $9, $10)");
    }
}
