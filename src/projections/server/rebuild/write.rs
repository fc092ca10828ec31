//! Writes a folded [`Model`] into the (emptied) tables on SQLite, and on
//! Postgres when the model outgrew memory (the per-event path that follows
//! needs the `Any` connection, which cannot COPY): each table's rows in
//! multi-row INSERTs, as many rows per statement as the backend's bind limit
//! allows. Rows are grouped by the columns they set (and the kind of value
//! bound to each, so that a Postgres VALUES list never mixes text with
//! numbers); the columns a row never set are left to their DEFAULT, as the
//! per-event INSERT leaves them.

use std::collections::BTreeMap;

use sqlx::AnyConnection;

use super::model::{Model, Row};
use crate::db::{Bind, Dialect};

/// Binds per statement: under SQLite's 32,766 and Postgres's 65,535.
pub fn max_binds(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 32_000,
        Dialect::Postgres => 65_000,
    }
}

/// The kind of a bound value as Postgres types it.
fn kind(bind: &Bind) -> u8 {
    match bind {
        Bind::Text(_) | Bind::Null => b't',
        Bind::Int(_) | Bind::NullInt => b'i',
        Bind::Float(_) => b'f',
    }
}

/// How a statement numbers its binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1, $2, ...` (Postgres).
    Numbered,
    /// `?, ?, ...`: SQLite looks a numbered `?NNN` up by a linear scan for
    /// every bind, quadratic in a statement of thousands of binds (73 s
    /// instead of under 1 s to write 134k rows).
    Anonymous,
}

impl Placeholders {
    pub fn of(dialect: Dialect) -> Placeholders {
        match dialect {
            Dialect::Postgres => Placeholders::Numbered,
            Dialect::Sqlite => Placeholders::Anonymous,
        }
    }
}

/// The INSERT statements (SQL and binds) that write `rows` into `table`.
pub fn statements(table: &str, rows: Vec<Row>, max_binds: usize, placeholders: Placeholders) -> Vec<(String, Vec<Bind>)> {
    let mut groups: BTreeMap<Vec<(&'static str, u8)>, Vec<Vec<Bind>>> = BTreeMap::new();
    for row in rows {
        let mut cols = row.into_cols();
        cols.sort_by_key(|(c, _)| *c);
        let signature = cols.iter().map(|(c, b)| (*c, kind(b))).collect();
        groups.entry(signature).or_default().push(cols.into_iter().map(|(_, b)| b).collect());
    }
    let mut out = Vec::new();
    for (signature, rows) in groups {
        let width = signature.len().max(1);
        let names: Vec<&str> = signature.iter().map(|(c, _)| *c).collect();
        let per_statement = (max_binds / width).max(1);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Bind>> = rows.by_ref().take(per_statement).collect();
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
            let mut binds = Vec::with_capacity(chunk.len() * width);
            for (i, row) in chunk.into_iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                match placeholders {
                    Placeholders::Numbered => sql.push_str(&crate::db::sql::placeholders(binds.len() + 1, row.len())),
                    Placeholders::Anonymous => sql.push_str(&vec!["?"; row.len()].join(", ")),
                }
                sql.push(')');
                binds.extend(row);
            }
            out.push((sql, binds));
        }
    }
    out
}

/// Writes every row of `model`; returns the rows written.
///
/// The statements are built on a blocking thread, one or two ahead of the
/// one the database is executing: building them (grouping, SQL text, binds)
/// was a third of the write's time, and it now overlaps the inserts.
pub async fn write(conn: &mut AnyConnection, dialect: Dialect, model: Model) -> Result<u64, sqlx::Error> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(String, Vec<Bind>)>(2);
    let builder = tokio::task::spawn_blocking(move || {
        for (table, rows) in model.into_tables() {
            for statement in statements(table, rows, max_binds(dialect), Placeholders::of(dialect)) {
                if sender.blocking_send(statement).is_err() {
                    return;
                }
            }
        }
    });
    let mut written = 0;
    while let Some((sql, binds)) = receiver.recv().await {
        // No `$` in the text, so the dialect's rewrite leaves it as is.
        written += super::super::exec(conn, dialect, &sql, &binds).await?;
    }
    builder.await.map_err(|e| sqlx::Error::Protocol(format!("building the replay's INSERTs failed: {e}")))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sql::Sql;

    fn row(cols: &[(&'static str, Bind)]) -> Row {
        Row::new(cols.to_vec())
    }

    #[test]
    fn rows_setting_the_same_columns_share_a_statement_whatever_their_order() {
        // Given two rows with the same columns set in a different order, and
        // one with a column fewer
        let rows = vec![
            row(&[("id", Bind::Text("a".into())), ("name", Bind::Text("x".into()))]),
            row(&[("name", Bind::Text("y".into())), ("id", Bind::Text("b".into()))]),
            row(&[("id", Bind::Text("c".into()))]),
        ];
        // When they become statements
        let stmts = statements("flow", rows, 1000, Placeholders::Numbered);
        // Then the first two are one two-row INSERT with columns sorted
        assert_eq!(stmts.len(), 2);
        let (sql, binds) = stmts.iter().find(|(s, _)| s.contains("name")).unwrap();
        assert_eq!(sql, "INSERT INTO flow (id, name) VALUES ($1, $2), ($3, $4)");
        assert_eq!(binds, &vec![Bind::Text("a".into()), Bind::Text("x".into()), Bind::Text("b".into()), Bind::Text("y".into())]);
        for (sql, binds) in stmts {
            Sql { text: sql, binds }.check_placeholders().unwrap();
        }
    }

    #[test]
    fn a_column_bound_as_text_in_one_row_and_int_in_another_splits_the_rows() {
        let rows = vec![row(&[("id", Bind::Text("a".into())), ("n", Bind::Int(1))]), row(&[("id", Bind::Text("b".into())), ("n", Bind::Null)])];
        assert_eq!(statements("t", rows, 1000, Placeholders::Numbered).len(), 2);
    }

    #[test]
    fn sqlite_statements_use_anonymous_placeholders() {
        let rows = vec![row(&[("id", Bind::Text("a".into())), ("n", Bind::Int(1))]), row(&[("id", Bind::Text("b".into())), ("n", Bind::Int(2))])];
        let stmts = statements("t", rows, 1000, Placeholders::Anonymous);
        assert_eq!(stmts[0].0, "INSERT INTO t (id, n) VALUES (?, ?), (?, ?)");
    }

    #[test]
    fn statements_stay_under_the_bind_limit() {
        // Given 10 rows of 3 columns and room for 7 binds per statement
        let rows = (0..10).map(|i| row(&[("id", Bind::Text(i.to_string())), ("a", Bind::Int(i)), ("b", Bind::Float(0.5))])).collect();
        // When they become statements
        let stmts = statements("t", rows, 7, Placeholders::Numbered);
        // Then each holds two rows (6 binds), and every row is written once
        assert_eq!(stmts.len(), 5);
        assert!(stmts.iter().all(|(_, b)| b.len() == 6));
        for (sql, binds) in stmts {
            Sql { text: sql, binds }.check_placeholders().unwrap();
        }
    }
}
