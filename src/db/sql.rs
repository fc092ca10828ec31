//! A tiny dynamic SQL builder: text plus positional binds, written once with
//! Postgres-style `$n` placeholders and rewritten for SQLite by [`Dialect`].
//! Filters and sorts that Prefect clients send as JSON compile into this.

/// The SQL dialect of the configured backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Rewrites `$n` placeholders to SQLite's `?n` (same numbering).
    pub fn rewrite(self, sql: &str) -> String {
        match self {
            Dialect::Postgres => sql.to_owned(),
            Dialect::Sqlite => sql.replace('$', "?"),
        }
    }

    /// SQL that is true when the JSON-array text column `column` contains the
    /// string bound at placeholder `placeholder` (e.g. `$3`).
    pub fn json_array_contains(self, column: &str, placeholder: &str) -> String {
        match self {
            Dialect::Postgres => format!("({column})::jsonb ? {placeholder}"),
            Dialect::Sqlite => {
                format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {placeholder})")
            }
        }
    }

    /// Microseconds since the Unix epoch (a BIGINT expression) of a read-model
    /// timestamp column: text in UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Exact on
    /// both backends, so time buckets computed from it agree to the microsecond.
    pub fn epoch_micros(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST(EXTRACT(EPOCH FROM CAST({column} AS TIMESTAMPTZ)) * 1000000 AS BIGINT)"),
            Dialect::Sqlite => format!(
                "(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000 + CAST(substr({column}, 21, 6) AS INTEGER))"
            ),
        }
    }

    /// The larger of two values (`GREATEST` on Postgres, scalar `MAX` on SQLite).
    pub fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Postgres => format!("GREATEST({a}, {b})"),
            Dialect::Sqlite => format!("MAX({a}, {b})"),
        }
    }

    /// SQL that is true when the JSON-array text column `column` is empty.
    pub fn json_array_is_empty(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("jsonb_array_length(({column})::jsonb) = 0"),
            Dialect::Sqlite => format!("json_array_length({column}) = 0"),
        }
    }
}

/// One bound value. Everything in the read models is text, integer or float.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    /// A text-typed NULL.
    Null,
    /// An integer-typed NULL (Postgres will not put a text NULL in a BIGINT column).
    NullInt,
}

/// SQL text under construction with its binds, in placeholder order.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Sql { text: text.into(), binds: Vec::new() }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Adds a bind and returns its placeholder (`$n`) without writing it.
    pub fn placeholder(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }

    /// Adds a bind and writes its placeholder.
    pub fn push_bind(&mut self, bind: Bind) -> &mut Self {
        let p = self.placeholder(bind);
        self.text.push_str(&p);
        self
    }

    /// Writes `(ph1, ph2, ...)` for a non-empty list of binds.
    pub fn push_list(&mut self, binds: impl IntoIterator<Item = Bind>) -> &mut Self {
        let phs: Vec<String> = binds.into_iter().map(|b| self.placeholder(b)).collect();
        self.text.push('(');
        self.text.push_str(&phs.join(", "));
        self.text.push(')');
        self
    }
}

#[cfg(test)]
impl Sql {
    /// Every bind has a placeholder in the text, every placeholder a bind, and
    /// there is no other `$` in the text.
    pub fn check_placeholders(&self) -> Result<(), String> {
        let b = self.text.as_bytes();
        let mut seen = vec![false; self.binds.len()];
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let n: usize = self.text[start..j].parse().map_err(|_| format!("stray '$' at {i}"))?;
                if n == 0 || n > seen.len() {
                    return Err(format!("placeholder ${n} has no bind"));
                }
                seen[n - 1] = true;
                i = j;
            } else {
                i += 1;
            }
        }
        match seen.iter().position(|s| !s) {
            Some(k) => Err(format!("bind {} has no placeholder", k + 1)),
            None => Ok(()),
        }
    }
}

impl From<&str> for Bind {
    fn from(s: &str) -> Self {
        Bind::Text(s.to_owned())
    }
}
impl From<String> for Bind {
    fn from(s: String) -> Self {
        Bind::Text(s)
    }
}
impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Bind::Int(v)
    }
}
impl From<f64> for Bind {
    fn from(v: f64) -> Self {
        Bind::Float(v)
    }
}
impl<T: Into<Bind>> From<Option<T>> for Bind {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Bind::Null)
    }
}

/// `$first, $first+1, ...`: `n` numbered placeholders for an `IN (...)` list.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
