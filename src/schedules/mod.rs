//! TEMPORARY stand-in until the schedules module lands (same API).
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct ScheduleError { pub loc: Vec<String>, pub msg: String }

#[derive(Debug, Clone)]
pub struct Schedule(Value);

impl Schedule {
    pub fn parse(value: &Value) -> Result<Schedule, ScheduleError> {
        if value.get("interval").is_some() || value.get("cron").is_some() || value.get("rrule").is_some() {
            Ok(Schedule(value.clone()))
        } else {
            Err(ScheduleError { loc: vec![], msg: "Input should be a valid schedule".into() })
        }
    }
    pub fn to_json(&self) -> Value { self.0.clone() }
    pub fn next_dates(&self, n: usize, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Vec<DateTime<Utc>> {
        let Some(secs) = self.0.get("interval").and_then(Value::as_f64) else { return vec![] };
        let step = chrono::Duration::milliseconds((secs * 1000.0) as i64);
        let mut out = Vec::new();
        let mut t = start;
        while out.len() < n && end.is_none_or(|e| t <= e) { out.push(t); t += step; }
        out
    }
    pub fn display_value(&self) -> String { "IntervalSchedule".into() }
}
