//! Literal expectations recorded from Prefect 3.8.8 (see each file's header).

pub(crate) mod cron;
pub(crate) mod interval;
pub(crate) mod rrule;
pub(crate) mod rrule_filters;
pub(crate) mod shape;

/// One recorded schedule and what Prefect did with it.
pub(crate) struct Case {
    pub name: &'static str,
    /// The schedule JSON as a client would send it.
    pub schedule: &'static str,
    pub query: Option<Query>,
    pub expect: Expect,
}

/// A `_get_dates_generator(n, start, end)` call (UTC ISO strings).
pub(crate) struct Query {
    pub n: usize,
    pub start: &'static str,
    pub end: Option<&'static str>,
}

pub(crate) enum Expect {
    /// Valid; Prefect serialized it as `json`.
    Parses { json: &'static str },
    /// Valid; the generator yielded `dates` (in generation order).
    Dates {
        json: &'static str,
        dates: &'static [&'static str],
    },
    /// Valid, but Prefect's `get_dates` raised (`why`); we return no dates.
    Raises {
        json: &'static str,
        why: &'static str,
    },
    /// Rejected; the first error of the union member chosen by key. A `msg`
    /// ending in `...` is a prefix of a very long pydantic message.
    Invalid {
        loc: &'static [&'static str],
        msg: &'static str,
    },
}
