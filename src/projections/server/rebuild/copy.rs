//! Writes a folded [`Model`] into the (emptied) tables on Postgres with
//! `COPY ... FROM STDIN` in text format: the server parses each value with
//! its column's input function, without planning and executing INSERTs of
//! thousands of binds (for 100k events, 132k rows: the INSERTs' write took
//! 1.8 s, COPY's about 1 s).
//!
//! Rows are grouped by the columns they set, as for the INSERTs
//! ([`super::write`]), so that the columns a row never set still take
//! their DEFAULT. Each value is encoded as the text whose parse stores what
//! the INSERT stored: an INSERT converts a bound value to its column's type
//! with an assignment cast, COPY parses text, and the two differ only for a
//! float in an integer column (the cast rounds it) or in a text column (the
//! cast writes Postgres's float format), which are encoded accordingly.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::ops::ControlFlow;

use sqlx::postgres::PgConnection;

use super::model::{Model, Row};
use crate::db::Bind;

/// Bytes of COPY data per statement: large enough that a statement's round
/// trip is negligible, small enough that encoding the next one overlaps
/// the server's parse of this one.
const CHUNK_BYTES: usize = 1 << 20;

/// The integer-typed columns of each table, which need a float rounded.
type IntegerColumns = HashMap<String, HashSet<String>>;

/// One COPY statement and its data.
#[derive(Debug, PartialEq)]
pub struct CopyStatement {
    pub sql: String,
    pub data: Vec<u8>,
}

/// Writes every row of `model` with COPY; returns the rows written.
///
/// The data is encoded on a blocking thread, a statement or two ahead of
/// the one the server is parsing, as [`super::write::write`] builds its
/// INSERTs.
pub async fn write(conn: &mut PgConnection, model: Model) -> Result<u64, sqlx::Error> {
    let integer = integer_columns(conn).await?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<CopyStatement>(2);
    let encoder = tokio::task::spawn_blocking(move || {
        let none = HashSet::new();
        for (table, rows) in model.tables() {
            let sent = copies(table, &rows, integer.get(table).unwrap_or(&none), CHUNK_BYTES, |copy| match sender.blocking_send(copy) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            });
            if sent.is_break() {
                break;
            }
        }
        model
    });
    let mut written = 0;
    while let Some(copy) = receiver.recv().await {
        let mut stream = conn.copy_in_raw(&copy.sql).await?;
        stream.send(copy.data).await?;
        written += stream.finish().await?;
    }
    let model = encoder.await.map_err(|e| sqlx::Error::Protocol(format!("encoding the replay's COPY data failed: {e}")))?;
    // Freeing the model's millions of strings took 0.4 s; on a blocking
    // thread it overlaps the fingerprint the replay takes next.
    tokio::task::spawn_blocking(move || drop(model));
    Ok(written)
}

/// The integer-typed columns of the tables on the connection's search path.
async fn integer_columns(conn: &mut PgConnection) -> Result<IntegerColumns, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relkind = 'r' AND pg_table_is_visible(c.oid) AND a.attnum > 0 AND NOT a.attisdropped \
         AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = IntegerColumns::new();
    for (table, column) in rows {
        out.entry(table).or_default().insert(column);
    }
    Ok(out)
}

/// Hands `emit` the COPY statements that write `rows` into `table`, each
/// with about `chunk_bytes` of data, until it breaks. `integer` names the
/// table's integer columns. Rows are grouped by the columns they set, in
/// the order they set them (the same code builds the same columns in the
/// same order, so this costs few extra statements and no per-row sort).
pub fn copies(
    table: &str,
    rows: &[&Row],
    integer: &HashSet<String>,
    chunk_bytes: usize,
    mut emit: impl FnMut(CopyStatement) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut groups: Vec<(Vec<&'static str>, Vec<&Row>)> = Vec::new();
    for row in rows {
        let names = row.cols().iter().map(|(c, _)| *c);
        match groups.iter_mut().find(|(group, _)| group.iter().copied().eq(names.clone())) {
            Some((_, members)) => members.push(row),
            None => groups.push((names.collect(), vec![row])),
        }
    }
    for (names, rows) in groups {
        let sql = format!("COPY {table} ({}) FROM STDIN", names.join(", "));
        let integer: Vec<bool> = names.iter().map(|c| integer.contains(*c)).collect();
        let mut data = Vec::with_capacity(chunk_bytes + chunk_bytes / 8);
        for row in rows {
            push_line(&mut data, row.cols(), &integer);
            if data.len() >= chunk_bytes {
                let full = std::mem::replace(&mut data, Vec::with_capacity(chunk_bytes + chunk_bytes / 8));
                emit(CopyStatement { sql: sql.clone(), data: full })?;
            }
        }
        if !data.is_empty() {
            emit(CopyStatement { sql, data })?;
        }
    }
    ControlFlow::Continue(())
}

/// Appends one row as a line of COPY text: values separated by tabs.
fn push_line(out: &mut Vec<u8>, row: &[(&'static str, Bind)], integer: &[bool]) {
    for (i, ((_, bind), integer)) in row.iter().zip(integer).enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        push_value(out, bind, *integer);
    }
    out.push(b'\n');
}

/// Appends the COPY text of one value for a column (integer-typed or not).
fn push_value(out: &mut Vec<u8>, bind: &Bind, integer: bool) {
    match bind {
        Bind::Text(s) => push_escaped(out, s),
        // Writing to a Vec cannot fail.
        Bind::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Bind::Float(v) if integer => out.extend_from_slice(float_as_integer(*v).as_bytes()),
        Bind::Float(v) => out.extend_from_slice(float_text(*v).as_bytes()),
        Bind::Null | Bind::NullInt => out.extend_from_slice(b"\\N"),
    }
}

/// Appends text with COPY's escapes for the bytes that would end the
/// value, the line, or start an escape. Most values need none, so the
/// bytes to escape are searched for with `memchr` (this was a tenth of a
/// replay's CPU as a byte-by-byte loop).
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Absolute positions of the next `\\`, `\t` or `\n` and of the next
    // `\r` (memchr3 takes three bytes), each searched for again only once
    // the copy has passed it.
    let find_three = |from: usize| memchr::memchr3(b'\\', b'\t', b'\n', &bytes[from..]).map(|i| from + i);
    let find_cr = |from: usize| memchr::memchr(b'\r', &bytes[from..]).map(|i| from + i);
    let (mut three, mut cr) = (find_three(0), find_cr(0));
    let mut plain_from = 0;
    loop {
        let at = match (three, cr) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        out.extend_from_slice(match bytes[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        plain_from = at + 1;
        if three == Some(at) {
            three = find_three(plain_from);
        } else {
            cr = find_cr(plain_from);
        }
    }
    out.extend_from_slice(&bytes[plain_from..]);
}

/// A float as Postgres writes a `double precision` (and its cast to text
/// does): the shortest text that reads back as the same value, in fixed
/// notation for decimal exponents from -4 to 14, otherwise as `1.5e+20`.
/// Parsing it gives the same float back, so it also serves float columns.
fn float_text(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let scientific = format!("{v:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else { return scientific };
    match exponent.parse::<i32>() {
        Ok(e) if (-4..15).contains(&e) => format!("{v}"),
        Ok(e) => format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()),
        Err(_) => scientific,
    }
}

/// A float for an integer column, rounded half to even as the INSERT's
/// cast rounds it. Out of range (or not finite) it stays a float, which the
/// column rejects as the cast would.
fn float_as_integer(v: f64) -> String {
    let rounded = v.round_ties_even();
    if rounded.is_finite() && rounded >= i64::MIN as f64 && rounded < i64::MAX as f64 {
        format!("{}", rounded as i64)
    } else {
        float_text(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[(&'static str, Bind)]) -> Row {
        Row::new(cols.to_vec())
    }

    fn no_integers() -> HashSet<String> {
        HashSet::new()
    }

    /// Every statement [`copies`] emits.
    fn all_copies(table: &str, rows: &[Row], chunk_bytes: usize) -> Vec<CopyStatement> {
        let rows: Vec<&Row> = rows.iter().collect();
        let mut out = Vec::new();
        let flow = copies(table, &rows, &no_integers(), chunk_bytes, |copy| {
            out.push(copy);
            ControlFlow::Continue(())
        });
        assert!(flow.is_continue());
        out
    }

    #[test]
    fn rows_setting_the_same_columns_in_the_same_order_share_a_statement() {
        // Given two rows setting the same columns, one with a column fewer
        // and one setting the same columns in another order
        let rows = vec![
            row(&[("id", Bind::Text("a".into())), ("name", Bind::Text("x".into()))]),
            row(&[("id", Bind::Text("c".into()))]),
            row(&[("id", Bind::Text("b".into())), ("name", Bind::Text("y".into()))]),
            row(&[("name", Bind::Text("z".into())), ("id", Bind::Text("d".into()))]),
        ];
        // When they become COPY statements
        let copies = all_copies("flow", &rows, CHUNK_BYTES);
        // Then the first and third share one, in the order first seen
        assert_eq!(
            copies,
            vec![
                CopyStatement { sql: "COPY flow (id, name) FROM STDIN".into(), data: b"a\tx\nb\ty\n".to_vec() },
                CopyStatement { sql: "COPY flow (id) FROM STDIN".into(), data: b"c\n".to_vec() },
                CopyStatement { sql: "COPY flow (name, id) FROM STDIN".into(), data: b"z\td\n".to_vec() },
            ]
        );
    }

    #[test]
    fn a_group_is_split_into_statements_of_about_the_chunk_size() {
        let rows: Vec<Row> = (0..10).map(|i| row(&[("id", Bind::Text(format!("r{i}")))])).collect();
        let copies = all_copies("t", &rows, 9);
        // Each line is 3 bytes: a statement ends once it holds 9 or more.
        assert_eq!(copies.iter().map(|c| c.data.len()).collect::<Vec<_>>(), vec![9, 9, 9, 3]);
        assert!(copies.iter().all(|c| c.sql == "COPY t (id) FROM STDIN"));
    }

    #[test]
    fn a_break_stops_the_statements() {
        let rows: Vec<Row> = (0..10).map(|i| row(&[("id", Bind::Text(format!("r{i}")))])).collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let mut emitted = 0;
        let flow = copies("t", &refs, &no_integers(), 3, |_| {
            emitted += 1;
            ControlFlow::Break(())
        });
        assert!(flow.is_break());
        assert_eq!(emitted, 1);
    }

    #[test]
    fn text_escapes_what_copy_would_read_as_syntax() {
        let mut out = Vec::new();
        push_value(&mut out, &Bind::Text("a\tb\nc\rd\\e \\N {\"k\": \"é\"}".into()), false);
        assert_eq!(String::from_utf8(out).unwrap(), "a\\tb\\nc\\rd\\\\e \\\\N {\"k\": \"é\"}");
    }

    #[test]
    fn every_mix_of_escaped_bytes_comes_out_as_a_byte_by_byte_escape_would() {
        let reference = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '\\' => "\\\\".to_owned(),
                    '\t' => "\\t".to_owned(),
                    '\n' => "\\n".to_owned(),
                    '\r' => "\\r".to_owned(),
                    c => c.to_string(),
                })
                .collect()
        };
        let cases = ["", "plain", "\r", "\r\r\r", "a\rb\tc\rd\ne", "\\\r\\\r", "é\r\n", "\t\t\rx\r", "end\\", "\r\nmid\t\r\\"];
        for case in cases {
            let mut out = Vec::new();
            push_escaped(&mut out, case);
            assert_eq!(String::from_utf8(out).unwrap(), reference(case), "{case:?}");
        }
    }

    #[test]
    fn nulls_are_null_and_the_empty_string_is_not() {
        let mut out = Vec::new();
        let row = [("a", Bind::Null), ("b", Bind::NullInt), ("c", Bind::Text(String::new())), ("d", Bind::Int(-7))];
        push_line(&mut out, &row, &[false, true, false, true]);
        assert_eq!(out, b"\\N\t\\N\t\t-7\n");
    }

    #[test]
    fn floats_are_written_as_postgres_writes_them() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.25e300, "1.25e+300"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, text) in cases {
            assert_eq!(float_text(v), text, "{v:e}");
        }
    }

    #[test]
    fn a_float_in_an_integer_column_is_rounded_half_to_even() {
        assert_eq!(float_as_integer(2.5), "2");
        assert_eq!(float_as_integer(3.5), "4");
        assert_eq!(float_as_integer(-2.5), "-2");
        assert_eq!(float_as_integer(7.0), "7");
        assert_eq!(float_as_integer(1e300), "1e+300");
        let mut out = Vec::new();
        push_line(&mut out, &[("n", Bind::Float(2.5)), ("t", Bind::Float(2.5))], &[true, false]);
        assert_eq!(out, b"2\t2.5\n");
    }
}
