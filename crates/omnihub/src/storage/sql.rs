//! Placeholder lists for statements built at run time (multi-row inserts and
//! `IN (…)` lists), numbered `$1…` as both backends accept.

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
