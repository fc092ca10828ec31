//! Prefect's text search query syntax
//! (`prefect/server/utilities/text_search_parser.py`): space-separated terms
//! are OR-ed, `-term` / `!term` excludes, `+term` is required, `"quoted
//! phrases"` (with `\"` and `\\` escapes) are single terms.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextSearchQuery {
    /// Any of these must appear (OR).
    pub include: Vec<String>,
    /// None of these may appear.
    pub exclude: Vec<String>,
    /// All of these must appear.
    pub required: Vec<String>,
}

pub fn parse_text_search_query(query: &str) -> TextSearchQuery {
    let mut result = TextSearchQuery::default();
    if query.trim().is_empty() {
        return result;
    }
    let q: Vec<char> = query.chars().collect();
    let n = q.len();
    let mut i = 0;
    while i < n {
        if q[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut prefix = None;
        if matches!(q[i], '-' | '!' | '+') {
            let prefix_char = q[i];
            i += 1;
            if i < n && !q[i].is_whitespace() {
                prefix = Some(prefix_char);
            } else {
                // A prefix followed by a space (or the end) is ignored.
                continue;
            }
        }
        let bucket = |r: &mut TextSearchQuery, term: String| match prefix {
            Some('-') | Some('!') => r.exclude.push(term),
            Some('+') => r.required.push(term),
            _ => r.include.push(term),
        };
        if i < n && q[i] == '"' {
            i += 1;
            let start = i;
            while i < n {
                if q[i] == '\\' && i + 1 < n {
                    i += 2;
                } else if q[i] == '"' {
                    break;
                } else {
                    i += 1;
                }
            }
            // An unclosed quote runs to the end (the escape skip may overshoot by one).
            let end = i.min(n);
            let phrase: String = q[start..end].iter().collect();
            if i < n {
                i += 1;
            }
            let phrase = unescape_phrase(&phrase);
            if !phrase.trim().is_empty() {
                bucket(&mut result, phrase);
            }
            continue;
        }
        if i < n {
            let start = i;
            while i < n && !q[i].is_whitespace() && q[i] != '"' {
                i += 1;
            }
            let term: String = q[start..i].iter().collect();
            if !term.is_empty() {
                bucket(&mut result, term);
            }
        }
    }
    result
}

fn unescape_phrase(phrase: &str) -> String {
    let p: Vec<char> = phrase.chars().collect();
    let mut out = String::with_capacity(phrase.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == '\\' && i + 1 < p.len() {
            match p[i + 1] {
                '"' => {
                    out.push('"');
                    i += 2;
                }
                '\\' => {
                    out.push('\\');
                    i += 2;
                }
                _ => {
                    out.push('\\');
                    i += 1;
                }
            }
        } else {
            out.push(p[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
        let r = parse_text_search_query(q);
        let leak = |v: Vec<String>| -> Vec<&'static str> { v.into_iter().map(|s| &*Box::leak(s.into_boxed_str())).collect() };
        (leak(r.include), leak(r.exclude), leak(r.required))
    }

    #[test]
    fn parses_like_prefect() {
        assert_eq!(p("   "), (vec![], vec![], vec![]));
        assert_eq!(p("error -debug"), (vec!["error"], vec!["debug"], vec![]));
        assert_eq!(p("\"connection timeout\""), (vec!["connection timeout"], vec![], vec![]));
        assert_eq!(p("+required -excluded !also"), (vec![], vec!["excluded", "also"], vec!["required"]));
        assert_eq!(p("- lone + signs"), (vec!["lone", "signs"], vec![], vec![]));
        assert_eq!(p(r#"-"a \"b\" c\\d" x"#), (vec!["x"], vec![r#"a "b" c\d"#], vec![]));
        assert_eq!(p("\"unclosed phrase"), (vec!["unclosed phrase"], vec![], vec![]));
        assert_eq!(p("a\"b c\""), (vec!["a", "b c"], vec![], vec![]));
        assert_eq!(p("\"  \" z"), (vec!["z"], vec![], vec![]));
        assert_eq!(p("--x"), (vec![], vec!["-x"], vec![]));
        assert_eq!(p("\"tail\\"), (vec!["tail\\"], vec![], vec![]));
    }
}
