//! Prefect's sort options (prefect/server/schemas/sorting.py) as SQL
//! `ORDER BY` terms, each with a tie-breaker on `id` so pages are stable.
//!
//! NULLs order as each backend does by default (last on ascending sorts in
//! Postgres, first in SQLite), which is what Prefect itself gives on each.

use crate::server_model::filters::FilterError;

macro_rules! sort_enum {
    ($(#[$doc:meta])* $name:ident, default $default:ident, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every option, in Prefect's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name (e.g. `"NAME_ASC"`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses a wire name; anything else is a 422 naming the options.
            pub fn parse(s: &str) -> Result<Self, FilterError> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| FilterError::Invalid {
                    loc: vec!["body".to_owned(), "sort".to_owned()],
                    msg: expected_one_of(Self::ALL.iter().map(|v| v.as_str())),
                })
            }

            /// Parses an optional wire name, defaulting as Prefect's route does.
            pub fn parse_or_default(s: Option<&str>) -> Result<Self, FilterError> {
                s.map_or(Ok(Self::default()), Self::parse)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Pydantic's enum message: `Input should be 'A', 'B' or 'C'`.
fn expected_one_of<'a>(opts: impl Iterator<Item = &'a str>) -> String {
    let opts: Vec<String> = opts.map(|o| format!("'{o}'")).collect();
    match opts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("Input should be {} or {last}", rest.join(", ")),
        Some((last, _)) => format!("Input should be {last}"),
        None => "Input should be a valid sort".to_owned(),
    }
}

/// `expr DIR, t.id DIR` (no tie-breaker when the sort is on id itself).
fn terms(t: &str, keys: &[(&str, bool)]) -> String {
    let mut out: Vec<String> = keys
        .iter()
        .map(|(expr, desc)| format!("{} {}", expr.replace("{t}", t), if *desc { "DESC" } else { "ASC" }))
        .collect();
    let id = format!("{t}.id");
    if !keys.iter().any(|(e, _)| e.replace("{t}", t) == id) {
        let desc = keys.last().is_some_and(|(_, d)| *d);
        out.push(format!("{id} {}", if desc { "DESC" } else { "ASC" }));
    }
    out.join(", ")
}

sort_enum!(
    /// `VariableSort`; the `/variables/filter` default is `NAME_ASC`.
    VariableSort, default NameAsc, {
        CreatedDesc => "CREATED_DESC",
        UpdatedDesc => "UPDATED_DESC",
        NameDesc => "NAME_DESC",
        NameAsc => "NAME_ASC",
    }
);

impl VariableSort {
    /// `ORDER BY` terms (without the keywords) for the `variable` table alias `t`.
    pub fn order_by(self, t: &str) -> String {
        match self {
            VariableSort::CreatedDesc => terms(t, &[("{t}.created", true)]),
            VariableSort::UpdatedDesc => terms(t, &[("{t}.updated", true)]),
            VariableSort::NameAsc => terms(t, &[("{t}.name", false)]),
            VariableSort::NameDesc => terms(t, &[("{t}.name", true)]),
        }
    }
}

sort_enum!(
    /// `BlockDocumentSort`; the `/block_documents/filter` default is `NAME_ASC`.
    BlockDocumentSort, default NameAsc, {
        NameDesc => "NAME_DESC",
        NameAsc => "NAME_ASC",
        BlockTypeAndNameAsc => "BLOCK_TYPE_AND_NAME_ASC",
    }
);

impl BlockDocumentSort {
    /// `ORDER BY` terms (without the keywords) for the `block_document` alias `t`.
    pub fn order_by(self, t: &str) -> String {
        match self {
            BlockDocumentSort::NameDesc => terms(t, &[("{t}.name", true)]),
            BlockDocumentSort::NameAsc => terms(t, &[("{t}.name", false)]),
            BlockDocumentSort::BlockTypeAndNameAsc => terms(t, &[("{t}.block_type_name", false), ("{t}.name", false)]),
        }
    }
}

sort_enum!(
    /// `FlowSort`; the `/flows/filter` default is `NAME_ASC`.
    FlowSort, default NameAsc, {
        CreatedDesc => "CREATED_DESC",
        UpdatedDesc => "UPDATED_DESC",
        NameAsc => "NAME_ASC",
        NameDesc => "NAME_DESC",
    }
);

impl FlowSort {
    /// `ORDER BY` terms (without the keywords) for the `flow` table alias `t`.
    pub fn order_by(self, t: &str) -> String {
        match self {
            FlowSort::CreatedDesc => terms(t, &[("{t}.created", true)]),
            FlowSort::UpdatedDesc => terms(t, &[("{t}.updated", true)]),
            FlowSort::NameAsc => terms(t, &[("{t}.name", false)]),
            FlowSort::NameDesc => terms(t, &[("{t}.name", true)]),
        }
    }
}

sort_enum!(
    /// `FlowRunSort`; the `/flow_runs/filter` default is `ID_DESC`.
    FlowRunSort, default IdDesc, {
        IdDesc => "ID_DESC",
        StartTimeAsc => "START_TIME_ASC",
        StartTimeDesc => "START_TIME_DESC",
        ExpectedStartTimeAsc => "EXPECTED_START_TIME_ASC",
        ExpectedStartTimeDesc => "EXPECTED_START_TIME_DESC",
        NameAsc => "NAME_ASC",
        NameDesc => "NAME_DESC",
        NextScheduledStartTimeAsc => "NEXT_SCHEDULED_START_TIME_ASC",
        EndTimeDesc => "END_TIME_DESC",
    }
);

impl FlowRunSort {
    /// `ORDER BY` terms (without the keywords) for the `flow_run` table alias `t`.
    pub fn order_by(self, t: &str) -> String {
        const START: &str = "COALESCE({t}.start_time, {t}.expected_start_time)";
        match self {
            FlowRunSort::IdDesc => terms(t, &[("{t}.id", true)]),
            FlowRunSort::StartTimeAsc => terms(t, &[(START, false)]),
            FlowRunSort::StartTimeDesc => terms(t, &[(START, true)]),
            FlowRunSort::ExpectedStartTimeAsc => terms(t, &[("{t}.expected_start_time", false)]),
            FlowRunSort::ExpectedStartTimeDesc => terms(t, &[("{t}.expected_start_time", true)]),
            FlowRunSort::NameAsc => terms(t, &[("{t}.name", false)]),
            FlowRunSort::NameDesc => terms(t, &[("{t}.name", true)]),
            FlowRunSort::NextScheduledStartTimeAsc => terms(t, &[("{t}.next_scheduled_start_time", false)]),
            FlowRunSort::EndTimeDesc => terms(t, &[("{t}.end_time", true)]),
        }
    }
}

sort_enum!(
    /// `TaskRunSort`; the `/task_runs/filter` default is `ID_DESC`.
    TaskRunSort, default IdDesc, {
        IdDesc => "ID_DESC",
        ExpectedStartTimeAsc => "EXPECTED_START_TIME_ASC",
        ExpectedStartTimeDesc => "EXPECTED_START_TIME_DESC",
        NameAsc => "NAME_ASC",
        NameDesc => "NAME_DESC",
        NextScheduledStartTimeAsc => "NEXT_SCHEDULED_START_TIME_ASC",
        EndTimeDesc => "END_TIME_DESC",
    }
);

impl TaskRunSort {
    /// `ORDER BY` terms (without the keywords) for the `task_run` table alias `t`.
    pub fn order_by(self, t: &str) -> String {
        match self {
            TaskRunSort::IdDesc => terms(t, &[("{t}.id", true)]),
            TaskRunSort::ExpectedStartTimeAsc => terms(t, &[("{t}.expected_start_time", false)]),
            TaskRunSort::ExpectedStartTimeDesc => terms(t, &[("{t}.expected_start_time", true)]),
            TaskRunSort::NameAsc => terms(t, &[("{t}.name", false)]),
            TaskRunSort::NameDesc => terms(t, &[("{t}.name", true)]),
            TaskRunSort::NextScheduledStartTimeAsc => terms(t, &[("{t}.next_scheduled_start_time", false)]),
            TaskRunSort::EndTimeDesc => terms(t, &[("{t}.end_time", true)]),
        }
    }
}

sort_enum!(
    /// `LogSort`; the `/logs/filter` default is `TIMESTAMP_ASC`.
    LogSort, default TimestampAsc, {
        TimestampAsc => "TIMESTAMP_ASC",
        TimestampDesc => "TIMESTAMP_DESC",
    }
);

impl LogSort {
    /// `ORDER BY` terms (without the keywords) for the `log` table alias `t`.
    pub fn order_by(self, t: &str) -> String {
        match self {
            LogSort::TimestampAsc => terms(t, &[("{t}.timestamp", false)]),
            LogSort::TimestampDesc => terms(t, &[("{t}.timestamp", true)]),
        }
    }
}

/// `DeploymentSort` as `ORDER BY` terms on table `deployment` (default
/// `NAME_ASC`).
pub fn deployment_order(sort: Option<&str>) -> Result<String, crate::server_model::filters::FilterError> {
    let t = "deployment";
    Ok(match sort.unwrap_or("NAME_ASC") {
        "CREATED_DESC" => terms(t, &[("{t}.created", true)]),
        "UPDATED_DESC" => terms(t, &[("{t}.updated", true)]),
        "NAME_ASC" => terms(t, &[("{t}.name", false)]),
        "NAME_DESC" => terms(t, &[("{t}.name", true)]),
        other => {
            return Err(crate::server_model::filters::FilterError::Invalid {
                loc: vec!["body".into(), "sort".into()],
                msg: format!("Input should be 'CREATED_DESC', 'UPDATED_DESC', 'NAME_ASC' or 'NAME_DESC' (got {other:?})"),
            })
        }
    })
}

sort_enum!(
    /// `ArtifactSort` and `ArtifactCollectionSort` (the same options); the
    /// filter routes' default is `ID_DESC`.
    ArtifactSort, default IdDesc, {
        CreatedDesc => "CREATED_DESC",
        UpdatedDesc => "UPDATED_DESC",
        IdDesc => "ID_DESC",
        KeyDesc => "KEY_DESC",
        KeyAsc => "KEY_ASC",
    }
);

impl ArtifactSort {
    /// `ORDER BY` terms (without the keywords) for the table alias `t`.
    pub fn order_by(self, t: &str) -> String {
        match self {
            ArtifactSort::CreatedDesc => terms(t, &[("{t}.created", true)]),
            ArtifactSort::UpdatedDesc => terms(t, &[("{t}.updated", true)]),
            ArtifactSort::IdDesc => terms(t, &[("{t}.id", true)]),
            ArtifactSort::KeyDesc => terms(t, &[("{t}.key", true)]),
            ArtifactSort::KeyAsc => terms(t, &[("{t}.key", false)]),
        }
    }
}
