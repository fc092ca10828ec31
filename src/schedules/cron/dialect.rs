//! Bridges croniter's cron dialect (what Prefect validates with) to croner.
//!
//! croner does all parsing and matching. This module only:
//! * expands croniter's `@` aliases and moves its trailing seconds field
//!   (6/7-field crons are `min hour dom mon dow sec [year]` in croniter but
//!   `sec min hour dom mon dow [year]` in croner);
//! * rewrites croniter-only spellings: `L<d>` (last weekday), `<n>-L`,
//!   reversed ranges such as `fri-mon` (croniter wraps around), and `a-a`
//!   (croniter reads it as the whole cycle);
//! * rejects croner-only syntax croniter refuses (`W`, `+`, `5L`, `/5`,
//!   names in the wrong field, random/hashed fields);
//! * decides OR vs AND for day-of-month/day-of-week the way croniter does
//!   (`day_or` only ORs when neither field expands to "every day").

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// `croniter.is_valid` would be false.
    Syntax,
    /// Prefect refuses `R`/`H` fields (croniter's random/hashed syntax).
    RandomOrHashed,
}

/// croniter's field order and value ranges.
const DOM: usize = 2;
const MONTH: usize = 3;
const DOW: usize = 4;
const YEAR: usize = 6;
const RANGES: [(u32, u32); 7] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6), (0, 59), (1970, 2099)];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Compiles a croniter expression into a croner matcher.
pub(crate) fn compile(expr: &str, day_or: bool) -> Result<Cron, Invalid> {
    let lowered = expr.to_lowercase();
    let expanded = alias(&lowered).unwrap_or(&lowered);
    let raw: Vec<&str> = expanded.split_whitespace().collect();
    if !(5..=7).contains(&raw.len()) {
        return Err(Invalid::Syntax);
    }
    if raw.iter().any(|f| is_hash_expr(f, 'h')) {
        return Err(Invalid::Syntax); // hashed fields need a hash id
    }
    if raw.iter().any(|f| is_hash_expr(f, 'r')) {
        return Err(Invalid::RandomOrHashed);
    }
    let fields = raw
        .iter()
        .enumerate()
        .map(|(index, field)| rewrite_field(index, field))
        .collect::<Result<Vec<_>, _>>()?;
    let pattern = croner_order(&fields).join(" ");

    let parse = |dom_and_dow: bool| {
        CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Optional)
            .sloppy_ranges(true)
            .dom_and_dow(dom_and_dow)
            .build()
            .parse(&pattern)
            .map_err(|_| Invalid::Syntax)
    };
    let cron = parse(false)?;
    let (dom, dow) = (raw[DOM], raw[DOW]);
    if day_or && !is_every_day(&cron, dom, dow, true) && !is_every_day(&cron, dom, dow, false) {
        Ok(cron)
    } else {
        parse(true)
    }
}

fn alias(expr: &str) -> Option<&'static str> {
    Some(match expr {
        "@midnight" | "@daily" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return None,
    })
}

/// croniter's `^(h|r)(\(\d+-\d+\))?(/\d+)?$` on a whole field.
fn is_hash_expr(field: &str, kind: char) -> bool {
    let Some(rest) = field.strip_prefix(kind) else {
        return false;
    };
    let rest = match rest.strip_prefix('(') {
        Some(inner) => match inner.split_once(')') {
            Some((range, after)) => match range.split_once('-') {
                Some((a, b)) if is_digits(a) && is_digits(b) => after,
                _ => return false,
            },
            None => return false,
        },
        None => rest,
    };
    rest.is_empty() || rest.strip_prefix('/').is_some_and(is_digits)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// croniter treats a day field as `*` (so no OR with the other one) when it
/// is literally `*`/`?`, or lists every value while the *other* field's text
/// contains a `*`.
fn is_every_day(cron: &Cron, dom: &str, dow: &str, check_dom: bool) -> bool {
    let (own, other) = if check_dom { (dom, dow) } else { (dow, dom) };
    if own == "*" || own == "?" {
        return true;
    }
    let all = if check_dom {
        cron.pattern.days.values().len() == 31
    } else {
        let mut days: Vec<u16> = cron
            .pattern
            .days_of_week
            .values()
            .into_iter()
            .map(|d| d % 7)
            .collect();
        days.sort_unstable();
        days.dedup();
        days.len() == 7
    };
    all && other.contains('*')
}

fn croner_order(fields: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(fields.len());
    if let Some(seconds) = fields.get(5) {
        out.push(seconds.clone());
    }
    out.extend(fields.iter().take(5).cloned());
    if let Some(year) = fields.get(6) {
        out.push(year.clone());
    }
    out
}

fn rewrite_field(index: usize, field: &str) -> Result<String, Invalid> {
    if field.contains('?') {
        return if field == "?" && (index == DOM || index == DOW) {
            Ok("*".to_string())
        } else {
            Err(Invalid::Syntax)
        };
    }
    let elements = field
        .split(',')
        .map(|e| rewrite_element(index, e))
        .collect::<Result<Vec<_>, _>>()?;
    if index == DOW {
        let nth = elements.iter().filter(|e| e.contains('#')).count();
        if nth > 0 && nth < elements.len() {
            // "day-of-week field does not support mixing literal values and
            // nth day of week syntax"
            return Err(Invalid::Syntax);
        }
    }
    Ok(elements.join(","))
}

fn rewrite_element(index: usize, element: &str) -> Result<String, Invalid> {
    // Anything that is not digits, `*`, a name of this field, `-`, `/` or
    // the croniter forms handled here is refused by `numeric`, which covers
    // croner-only syntax such as `15W`, `+MON` or `/5`.
    if element.is_empty() {
        return Err(Invalid::Syntax);
    }
    if index == DOW {
        if let Some(day) = element.strip_prefix('l') {
            return if is_digits(day) {
                Ok(format!("{}#L", numeric(index, day)?))
            } else {
                Err(Invalid::Syntax)
            };
        }
        if let Some((day, nth)) = element.split_once('#') {
            let nth_ok = is_digits(nth) && nth.parse::<u32>().is_ok_and(|n| (1..=5).contains(&n));
            let day_ok = day.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || day.split_once('-').is_some_and(|(a, b)| {
                    WEEKDAYS.contains(&a) && WEEKDAYS.contains(&b)
                });
            if !nth_ok || !day_ok {
                return Err(Invalid::Syntax);
            }
            return Ok(format!("{}#{nth}", rewrite_range(index, day)?));
        }
    }
    if index == DOM {
        if element == "l" {
            return Ok("L".to_string());
        }
        if let Some((range, step)) = split_step(element) {
            if let Some(low) = range.strip_suffix("-l") {
                return rewrite_range(index, &format!("{low}-31{step}"));
            }
        }
    }
    rewrite_range(index, element)
}

/// Splits `x/n` into (`x`, `/n`); the step stays attached for re-joining.
fn split_step(element: &str) -> Option<(&str, &str)> {
    match element.find('/') {
        Some(pos) => Some((&element[..pos], &element[pos..])),
        None => Some((element, "")),
    }
}

/// Replaces names by numbers and rewrites croniter's wrap-around and
/// `a-a` ranges into plain croner ranges. Anything else is passed through
/// for croner to judge.
fn rewrite_range(index: usize, element: &str) -> Result<String, Invalid> {
    let (range, step) = split_step(element).ok_or(Invalid::Syntax)?;
    let Some((low, high)) = range.split_once('-') else {
        if range == "*" {
            return Ok(element.to_string());
        }
        let value = numeric(index, range)?;
        if index == YEAR && !(RANGES[YEAR].0..=RANGES[YEAR].1).contains(&value) {
            return Err(Invalid::Syntax); // croner allows years croniter refuses
        }
        return Ok(format!("{value}{step}"));
    };
    let (low, high) = (numeric(index, low)?, numeric(index, high)?);
    let step_n = match step.strip_prefix('/') {
        Some(s) if is_digits(s) => s.parse::<u32>().map_err(|_| Invalid::Syntax)?,
        Some(_) => return Err(Invalid::Syntax),
        None => 1,
    };
    if step_n == 0 {
        return Err(Invalid::Syntax);
    }
    let (min, max) = RANGES.get(index).copied().ok_or(Invalid::Syntax)?;
    // croniter maps Sunday=7 to 0 before comparing the bounds.
    let alias = |v: u32| if index == DOW && v == 7 { 0 } else { v };
    let (low, high) = (alias(low), alias(high));
    if low.max(high) > max || (index == YEAR && low.min(high) < min) {
        return Err(Invalid::Syntax);
    }
    if low < high {
        return Ok(format!("{low}-{high}{step}"));
    }
    if low == high {
        // croniter: "Jan-Jan" / "Sun-Sun" means the whole cycle.
        return Ok(format!("{min}-{max}{step}"));
    }
    // Wrap around: low..=max then min(+skip)..=high, continuing the step
    // the way croniter does.
    let last_first = low + (max - low) / step_n * step_n;
    let already_skipped = max - last_first;
    let curpos = last_first - min;
    let to_skip = if curpos + step_n > max - min + 1 && already_skipped < step_n {
        step_n - already_skipped
    } else {
        0
    };
    let mut parts = vec![format!("{low}-{max}/{step_n}")];
    if min + to_skip <= high {
        parts.push(format!("{}-{high}/{step_n}", min + to_skip));
    }
    Ok(parts.join(","))
}

/// A single value: digits, or a month/weekday name in its own field.
fn numeric(index: usize, token: &str) -> Result<u32, Invalid> {
    if is_digits(token) {
        return token.parse().map_err(|_| Invalid::Syntax);
    }
    let names: &[&str] = match index {
        MONTH => &MONTHS,
        DOW => &WEEKDAYS,
        _ => return Err(Invalid::Syntax),
    };
    let position = names
        .iter()
        .position(|n| *n == token)
        .ok_or(Invalid::Syntax)? as u32;
    Ok(if index == MONTH { position + 1 } else { position })
}
