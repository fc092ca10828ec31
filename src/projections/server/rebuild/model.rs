//! The server model held in memory while a replay folds the log: each table
//! as its rows by id, each row as the columns the per-event path's INSERT
//! listed and its UPDATEs set since. Columns never set are left out, so the
//! table's DEFAULT fills them when the rows are written, as it does live.
//!
//! Besides the rows, the model keeps the two unique keys that decide what an
//! insert does: a task run's natural key `(flow_run_id, task_key,
//! dynamic_key)` (the recorder looks task runs up by it, and its INSERT ...
//! ON CONFLICT DO NOTHING skips a duplicate) and a flow-run state's
//! `(flow_run_id, timestamp)` (its INSERT skips a duplicate too).

use std::collections::{HashMap, HashSet};

use super::super::Cols;
use crate::db::Bind;

/// One row: its columns in the order they were first set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    cols: Cols,
}

impl Row {
    pub fn new(cols: Cols) -> Row {
        let mut row = Row::default();
        row.set_all(cols);
        row
    }

    #[cfg(test)]
    pub fn get(&self, col: &str) -> Option<&Bind> {
        self.cols.iter().find(|(c, _)| *c == col).map(|(_, b)| b)
    }

    /// The column's value when it is non-NULL text (what `col = 'x'` matches).
    pub fn text(&self, col: &str) -> Option<&str> {
        text(&self.cols, col)
    }

    pub fn set(&mut self, col: &'static str, bind: Bind) {
        match self.cols.iter_mut().find(|(c, _)| *c == col) {
            Some(slot) => slot.1 = bind,
            None => self.cols.push((col, bind)),
        }
    }

    /// Sets each column in turn, as an UPDATE's SET list does.
    pub fn set_all(&mut self, cols: Cols) {
        for (col, bind) in cols {
            self.set(col, bind);
        }
    }

    pub fn into_cols(self) -> Cols {
        self.cols
    }

    pub fn cols(&self) -> &[(&'static str, Bind)] {
        &self.cols
    }
}

/// Column `col` of `cols` when it is non-NULL text.
pub fn text<'a>(cols: &'a Cols, col: &str) -> Option<&'a str> {
    cols.iter().find_map(|(c, b)| match b {
        Bind::Text(s) if *c == col => Some(s.as_str()),
        _ => None,
    })
}

/// A task run's natural key, when all three columns are non-NULL text.
type TaskKey = (String, String, String);

fn task_key(cols: &Cols) -> Option<TaskKey> {
    Some((text(cols, "flow_run_id")?.to_owned(), text(cols, "task_key")?.to_owned(), text(cols, "dynamic_key")?.to_owned()))
}

/// The columns of `table`'s unique keys besides the id.
fn key_columns(table: &str) -> &'static [&'static str] {
    match table {
        "task_run" => &["flow_run_id", "task_key", "dynamic_key"],
        "flow_run_state" => &["flow_run_id", "timestamp"],
        _ => &[],
    }
}

/// Just the [`key_columns`] of `row`: enough to index or unindex it, and
/// to tell whether an update moved one of its keys.
fn key_row(table: &str, row: &Row) -> Row {
    Row { cols: row.cols.iter().filter(|(c, _)| key_columns(table).contains(c)).cloned().collect() }
}

fn state_key(cols: &Cols) -> Option<(String, String)> {
    Some((text(cols, "flow_run_id")?.to_owned(), text(cols, "timestamp")?.to_owned()))
}

/// The keyed tables, the state cache (which has no key) and the unique keys.
#[derive(Debug, Default)]
pub struct Model {
    tables: HashMap<&'static str, HashMap<String, Row>>,
    /// `task_run_state_cache` rows, in insertion order.
    cache: Vec<Row>,
    task_keys: HashMap<TaskKey, String>,
    flow_run_state_keys: HashSet<(String, String)>,
    inserted: usize,
}

impl Model {
    /// Rows inserted so far (deleted ones included): a bound on the memory held.
    pub fn inserted(&self) -> usize {
        self.inserted
    }

    pub fn get(&self, table: &str, id: &str) -> Option<&Row> {
        self.tables.get(table)?.get(id)
    }

    pub fn contains(&self, table: &str, id: &str) -> bool {
        self.get(table, id).is_some()
    }

    /// The task run holding this natural key.
    pub fn task_run_by_key(&self, key: &TaskKey) -> Option<&str> {
        self.task_keys.get(key).map(String::as_str)
    }

    /// Would inserting `cols` into `table` hit a unique key other than the id?
    pub fn conflicts(&self, table: &str, cols: &Cols) -> bool {
        match table {
            "task_run" => task_key(cols).is_some_and(|k| self.task_keys.contains_key(&k)),
            "flow_run_state" => state_key(cols).is_some_and(|k| self.flow_run_state_keys.contains(&k)),
            _ => false,
        }
    }

    /// Inserts `cols` as row `id` of `table`, which must not hold it yet:
    /// the caller decides what a duplicate means (an error or nothing).
    pub fn insert(&mut self, table: &'static str, id: String, cols: Cols) {
        let row = Row::new(cols);
        self.index(table, &id, &row);
        self.inserted += 1;
        self.tables.entry(table).or_default().insert(id, row);
    }

    /// `UPDATE table SET cols WHERE id = id`: nothing when there is no such row.
    /// The row is changed in place; the unique keys are re-indexed only
    /// when the update changed one.
    pub fn update(&mut self, table: &'static str, id: &str, cols: Cols) {
        let Some(row) = self.tables.get_mut(table).and_then(|t| t.get_mut(id)) else { return };
        if !cols.iter().any(|(c, _)| key_columns(table).contains(c)) {
            row.set_all(cols);
            return;
        }
        let before = key_row(table, row);
        row.set_all(cols);
        let after = key_row(table, row);
        if before != after {
            self.unindex(table, &before);
            self.index(table, id, &after);
        }
    }

    /// `DELETE FROM table WHERE id = id`.
    pub fn delete(&mut self, table: &'static str, id: &str) {
        if let Some(row) = self.tables.get_mut(table).and_then(|t| t.remove(id)) {
            self.unindex(table, &row);
        }
    }

    /// The ids of the rows of `table` whose `col` is one of `values`.
    pub fn ids_where(&self, table: &str, col: &str, values: &HashSet<String>) -> HashSet<String> {
        let Some(rows) = self.tables.get(table) else { return HashSet::new() };
        rows.iter().filter(|(_, r)| r.text(col).is_some_and(|v| values.contains(v))).map(|(id, _)| id.clone()).collect()
    }

    /// `DELETE FROM table WHERE col IN values`.
    pub fn delete_where(&mut self, table: &'static str, col: &str, values: &HashSet<String>) {
        for id in self.ids_where(table, col, values) {
            self.delete(table, &id);
        }
    }

    /// `UPDATE table SET cols = NULL WHERE col IN values`.
    pub fn null_where(&mut self, table: &'static str, col: &str, values: &HashSet<String>, cols: &[&'static str]) {
        for id in self.ids_where(table, col, values) {
            self.update(table, &id, cols.iter().map(|c| (*c, Bind::Null)).collect());
        }
    }

    /// Appends a `task_run_state_cache` row.
    pub fn push_cache(&mut self, cols: Cols) {
        self.inserted += 1;
        self.cache.push(Row::new(cols));
    }

    /// Every table's rows, emptying the model.
    pub fn into_tables(self) -> Vec<(&'static str, Vec<Row>)> {
        let mut out: Vec<(&'static str, Vec<Row>)> = self.tables.into_iter().map(|(t, rows)| (t, rows.into_values().collect())).collect();
        out.push(("task_run_state_cache", self.cache));
        out.sort_by_key(|(t, _)| *t);
        out
    }

    /// Every table's rows, by reference, in the order of [`Model::into_tables`].
    pub fn tables(&self) -> Vec<(&'static str, Vec<&Row>)> {
        let mut out: Vec<(&'static str, Vec<&Row>)> = self
            .tables
            .iter()
            .map(|(t, rows)| {
                let mut rows: Vec<(&String, &Row)> = rows.iter().collect();
                rows.sort_unstable_by_key(|(id, _)| *id);
                (*t, rows.into_iter().map(|(_, row)| row).collect())
            })
            .collect();
        out.push(("task_run_state_cache", self.cache.iter().collect()));
        out.sort_by_key(|(t, _)| *t);
        out
    }

    fn index(&mut self, table: &str, id: &str, row: &Row) {
        match table {
            "task_run" => {
                if let Some(k) = task_key(&row.cols) {
                    self.task_keys.insert(k, id.to_owned());
                }
            }
            "flow_run_state" => {
                if let Some(k) = state_key(&row.cols) {
                    self.flow_run_state_keys.insert(k);
                }
            }
            _ => {}
        }
    }

    fn unindex(&mut self, table: &str, row: &Row) {
        match table {
            "task_run" => {
                if let Some(k) = task_key(&row.cols) {
                    self.task_keys.remove(&k);
                }
            }
            "flow_run_state" => {
                if let Some(k) = state_key(&row.cols) {
                    self.flow_run_state_keys.remove(&k);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Bind {
        Bind::Text(s.to_owned())
    }

    fn set(values: &[&str]) -> HashSet<String> {
        values.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_update_overwrites_set_columns_and_adds_new_ones_in_place() {
        // Given a row inserted with two columns
        let mut model = Model::default();
        model.insert("flow", "f".into(), vec![("id", text("f")), ("tags", text("[]"))]);
        // When an update sets one of them and a new one
        model.update("flow", "f", vec![("tags", text("[\"a\"]")), ("version", Bind::Int(2))]);
        // Then the row keeps its column order and has the new values
        let row = model.get("flow", "f").unwrap().clone();
        assert_eq!(row.into_cols(), vec![("id", text("f")), ("tags", text("[\"a\"]")), ("version", Bind::Int(2))]);
    }

    #[test]
    fn an_update_of_a_missing_row_does_nothing() {
        let mut model = Model::default();
        model.update("flow", "nope", vec![("tags", text("[]"))]);
        assert!(!model.contains("flow", "nope"));
    }

    #[test]
    fn the_task_run_natural_key_follows_updates_and_deletes() {
        // Given a task run with a full natural key
        let mut model = Model::default();
        let key = ("fr".to_owned(), "k".to_owned(), "0".to_owned());
        model.insert("task_run", "t".into(), vec![("flow_run_id", text("fr")), ("task_key", text("k")), ("dynamic_key", text("0"))]);
        assert_eq!(model.task_run_by_key(&key), Some("t"));
        // When its dynamic key changes
        model.update("task_run", "t", vec![("dynamic_key", text("1"))]);
        // Then only the new key finds it
        assert_eq!(model.task_run_by_key(&key), None);
        let moved = ("fr".to_owned(), "k".to_owned(), "1".to_owned());
        assert_eq!(model.task_run_by_key(&moved), Some("t"));
        // And once deleted, nothing does
        model.delete("task_run", "t");
        assert_eq!(model.task_run_by_key(&moved), None);
    }

    #[test]
    fn an_update_that_rewrites_a_key_with_the_same_values_keeps_it_indexed() {
        let mut model = Model::default();
        let key = ("fr".to_owned(), "k".to_owned(), "0".to_owned());
        model.insert("task_run", "t".into(), vec![("flow_run_id", text("fr")), ("task_key", text("k")), ("dynamic_key", text("0"))]);
        model.update("task_run", "t", vec![("flow_run_id", text("fr")), ("state_type", text("RUNNING"))]);
        assert_eq!(model.task_run_by_key(&key), Some("t"));
        assert_eq!(model.get("task_run", "t").unwrap().text("state_type"), Some("RUNNING"));
    }

    #[test]
    fn a_null_flow_run_id_gives_no_natural_key() {
        let mut model = Model::default();
        model.insert("task_run", "t".into(), vec![("flow_run_id", Bind::Null), ("task_key", text("k")), ("dynamic_key", text("0"))]);
        let other = vec![("flow_run_id", Bind::Null), ("task_key", text("k")), ("dynamic_key", text("0"))];
        assert!(!model.conflicts("task_run", &other));
    }

    #[test]
    fn a_flow_run_state_at_the_same_timestamp_conflicts() {
        let mut model = Model::default();
        model.insert("flow_run_state", "s1".into(), vec![("flow_run_id", text("r")), ("timestamp", text("t0"))]);
        let same = vec![("id", text("s2")), ("flow_run_id", text("r")), ("timestamp", text("t0"))];
        let later = vec![("flow_run_id", text("r")), ("timestamp", text("t1"))];
        assert!(model.conflicts("flow_run_state", &same));
        assert!(!model.conflicts("flow_run_state", &later));
        model.delete("flow_run_state", "s1");
        assert!(!model.conflicts("flow_run_state", &same));
    }

    #[test]
    fn delete_where_and_null_where_match_text_values_only() {
        // Given runs in two pools and one with no pool
        let mut model = Model::default();
        model.insert("flow_run", "a".into(), vec![("work_pool_id", text("p1")), ("work_pool_name", text("one"))]);
        model.insert("flow_run", "b".into(), vec![("work_pool_id", text("p2")), ("work_pool_name", text("two"))]);
        model.insert("flow_run", "c".into(), vec![("work_pool_id", Bind::Null)]);
        // When pool p1's runs lose their pool, and p2's runs are deleted
        model.null_where("flow_run", "work_pool_id", &set(&["p1"]), &["work_pool_id", "work_pool_name"]);
        model.delete_where("flow_run", "work_pool_id", &set(&["p2"]));
        // Then
        assert_eq!(model.get("flow_run", "a").unwrap().get("work_pool_name"), Some(&Bind::Null));
        assert!(!model.contains("flow_run", "b"));
        assert!(model.contains("flow_run", "c"));
    }
}
