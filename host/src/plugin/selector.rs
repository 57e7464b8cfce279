//! Kubernetes label selectors in their string form (`app=db,tier in (a,b),!canary`), the
//! way `kubectl get -l` takes them, parsed into kube's selector type for matching.

use kube_core::{Expression, Selector};
use std::collections::BTreeSet;

/// A selector string that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("selector {selector:?} is not a valid label selector: {why}")]
pub struct SelectorError {
    pub selector: String,
    pub why: String,
}

/// Parses a label selector. The empty string is the empty selector.
///
/// ```
/// use labkubelet::plugin::parse_selector;
/// use kube_core::SelectorExt;
/// let s = parse_selector("app=db, tier in (a,b), !canary").unwrap();
/// let labels = [("app".to_string(), "db".to_string()), ("tier".to_string(), "a".to_string())].into();
/// assert!(s.matches(&labels));
/// ```
pub fn parse_selector(text: &str) -> Result<Selector, SelectorError> {
    let fail = |why: String| SelectorError { selector: text.to_string(), why };
    let mut expressions = Vec::new();
    for requirement in split_requirements(text) {
        let r = requirement.trim();
        if r.is_empty() {
            if text.trim().is_empty() {
                continue;
            }
            return Err(fail("empty requirement (a stray comma?)".into()));
        }
        expressions.push(parse_requirement(r).map_err(fail)?);
    }
    Ok(Selector::from_iter(expressions))
}

/// Splits on commas that are not inside a value set.
fn split_requirements(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(r: &str) -> Result<Expression, String> {
    if let Some(key) = r.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(label_key(key.trim())?));
    }
    if let Some((key, value)) = r.split_once("!=") {
        return Ok(Expression::NotEqual(label_key(key.trim())?, label_value(value.trim())?));
    }
    if let Some((key, value)) = r.split_once("==").or_else(|| r.split_once('=')) {
        return Ok(Expression::Equal(label_key(key.trim())?, label_value(value.trim())?));
    }
    let words: Vec<&str> = r.splitn(3, char::is_whitespace).filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        [key] => Ok(Expression::Exists(label_key(key)?)),
        [key, op, rest] if *op == "in" || *op == "notin" => {
            let set = value_set(rest.trim())?;
            let key = label_key(key)?;
            Ok(if *op == "in" { Expression::In(key, set) } else { Expression::NotIn(key, set) })
        }
        _ => Err(format!("cannot read {r:?}; use key=value, key!=value, key in (a,b), key notin (a,b), key or !key")),
    }
}

fn value_set(text: &str) -> Result<BTreeSet<String>, String> {
    let inner = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(|| format!("a value set must be in parentheses, got {text:?}"))?;
    inner.split(',').map(|v| label_value(v.trim())).collect()
}

fn label_key(key: &str) -> Result<String, String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if prefix.is_some_and(|p| p.is_empty() || p.len() > 253) {
        return Err(format!("label key {key:?} has an invalid prefix"));
    }
    if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("label key {key:?} is not valid"));
    }
    Ok(key.to_string())
}

fn label_value(value: &str) -> Result<String, String> {
    if value.len() > 63 || !value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("label value {value:?} is not valid"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_core::SelectorExt;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_like_kubectl() {
        let s = parse_selector("app=db,tier in (a, b),!canary").unwrap();
        assert!(s.matches(&labels(&[("app", "db"), ("tier", "b")])));
        assert!(!s.matches(&labels(&[("app", "db"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "db"), ("tier", "a"), ("canary", "1")])));
        let s = parse_selector("env notin (prod), team, app!=web").unwrap();
        assert!(s.matches(&labels(&[("env", "dev"), ("team", "x"), ("app", "db")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("app", "db")])));
        assert!(parse_selector("").unwrap().selects_all());
    }

    #[test]
    fn bad_selectors_say_why() {
        assert!(parse_selector("app=").is_ok());
        let e = parse_selector("app in a,b").unwrap_err();
        assert!(e.why.contains("parentheses"), "{e}");
        assert!(parse_selector("app=db,,x=y").is_err());
        assert!(parse_selector("a b c d").is_err());
        assert!(parse_selector("bad key=1").is_err());
    }
}
