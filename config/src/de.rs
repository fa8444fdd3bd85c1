//! Reading config files with serde without stopping at the first problem.
//!
//! The types of `node.toml` and `edge.toml` derive `Deserialize` (`deny_unknown_fields`,
//! defaults on the types). serde stops at the first error, so [`read`] deserializes, notes the
//! error with its key path, takes the offending key out and tries again, until what remains
//! deserializes: every mistyped, malformed or unknown key of a file is reported at once, the
//! rest of the file still read. The checks serde cannot make (ranges, keys that go together,
//! a default above its maximum) are each type's `validate`. [`in_file_order`] then lists the
//! problems in the order of the keys they are about.

use std::collections::HashMap;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;
use toml::{Table, Value};

use crate::units::{parse_duration, parse_size};
use crate::Problem;

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Parses TOML text into a table, turning a syntax error into a problem with line and column.
pub(crate) fn parse_toml(text: &str) -> Result<Table, Problem> {
    text.parse::<Table>().map_err(|e| {
        let mut message = e.message().to_string();
        if let Some(span) = e.span() {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            message = format!("line {line}, column {column}: {message}");
        }
        Problem { path: String::new(), message: format!("invalid TOML: {message}") }
    })
}

/// Deserializes `value` (found at key path `at`) into `T`, pushing a problem for every key
/// that does not fit and reading the rest.
/// Items taken out of arrays are noted in `removed`, so that problems found later keep the
/// index the user sees.
pub(crate) fn read<T: DeserializeOwned + Default>(
    mut value: Value,
    at: &str,
    problems: &mut Vec<Problem>,
    removed: &mut Removed,
) -> T {
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return t,
            Err(e) => e,
        };
        let segments: Vec<Step> = error
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                _ => None,
            })
            .collect();
        let (path, taken) = take(&mut value, &segments, at, &mut removed.0);
        problems.push(Problem { path, message: plain(error.inner().message()) });
        if !taken {
            return T::default();
        }
    }
}

/// The array items [`read`] took out, by the array's path in the file.
#[derive(Default)]
pub(crate) struct Removed(HashMap<String, Vec<usize>>);

impl Removed {
    /// `path` (indexes counted in what was read) with the indexes the file has.
    fn in_file(&self, path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find(']').map(|c| open + c) else { break };
            match rest[open + 1..close].parse::<usize>() {
                Ok(index) => {
                    let gone = self.0.get(&out).map_or(&[][..], Vec::as_slice);
                    out.push_str(&format!("[{}]", original_index(gone, index)));
                }
                Err(_) => out.push_str(&rest[open..=close]),
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

enum Step {
    Key(String),
    Index(usize),
}

/// Removes the item at `steps` from `value`; returns its path as the file has it (array
/// indexes before earlier removals) and whether anything was removed.
fn take(
    value: &mut Value,
    steps: &[Step],
    at: &str,
    removed: &mut HashMap<String, Vec<usize>>,
) -> (String, bool) {
    let mut path = at.to_string();
    let mut here = value;
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        match (step, here) {
            (Step::Key(key), Value::Table(table)) => {
                path = join(&path, key);
                if last {
                    return (path, table.remove(key).is_some());
                }
                match table.get_mut(key) {
                    Some(next) => here = next,
                    None => return (path, false),
                }
            }
            (Step::Index(index), Value::Array(items)) => {
                let gone = removed.entry(path.clone()).or_default();
                let original = original_index(gone, *index);
                path = format!("{path}[{original}]");
                if last {
                    if *index >= items.len() {
                        return (path, false);
                    }
                    items.remove(*index);
                    gone.push(original);
                    return (path, true);
                }
                match items.get_mut(*index) {
                    Some(next) => here = next,
                    None => return (path, false),
                }
            }
            _ => return (path, false),
        }
    }
    (path, false)
}

/// The index in the file of what is now item `index`, `gone` being the file indexes taken out.
fn original_index(gone: &[usize], index: usize) -> usize {
    (0..).filter(|i| !gone.contains(i)).nth(index).expect("an unbounded range")
}

/// serde's wording of a problem, in the words of a config file.
fn plain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, found {}", kind(expected), kind(found));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, _)) = rest.split_once(", expected ") {
            let found = found.rsplit(' ').next().unwrap_or(found).trim_matches('`');
            return format!("{found} is out of range");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        // serde quotes each expected key in backticks: the odd pieces between them.
        let keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        return if keys.is_empty() {
            "unknown key".into()
        } else {
            format!("unknown key (expected one of: {})", keys.join(", "))
        };
    }
    message.to_string()
}

/// "integer `3`" → "an integer", "struct HttpConfig" → "a table", "u32" → "an integer".
fn kind(serde_words: &str) -> String {
    let word = serde_words.split([' ', '`']).next().unwrap_or(serde_words);
    match word {
        "integer" | "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64"
        | "isize" => "an integer".into(),
        "string" | "char" | "path" => "a string".into(),
        "boolean" | "bool" => "a boolean".into(),
        "floating" | "f32" | "f64" => "a float".into(),
        "sequence" => "an array".into(),
        "map" | "struct" => "a table".into(),
        "a" | "an" => match serde_words {
            "a sequence" => "an array".into(),
            "a map" => "a table".into(),
            "a borrowed string" => "a string".into(),
            other => other.into(),
        },
        _ => serde_words.into(),
    }
}

/// Adds what `validate` found to what reading found, leaving out a key already reported (a
/// mistyped key read as its default is not "missing" too).
pub(crate) fn add_checks(problems: &mut Vec<Problem>, checks: Vec<Problem>, removed: &Removed) {
    for mut check in checks {
        check.path = removed.in_file(&check.path);
        if !problems.iter().any(|p| p.path == check.path) {
            problems.push(check);
        }
    }
}

/// Sorts problems into the order of the keys they are about in `root` (the file, overrides
/// applied); a missing key comes after the rest of its table, a problem about no key first.
pub(crate) fn in_file_order(problems: &mut [Problem], root: &Table) {
    let mut order: HashMap<String, (usize, usize)> = HashMap::new();
    let mut next = 0;
    number(&mut order, &mut next, "", &Value::Table(root.clone()));
    let position = |path: &str| -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&(start, end)) = order.get(p) {
                return if p == path { (start, 0) } else { (end, 1) };
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (0, 0),
            }
        }
    };
    problems.sort_by_cached_key(|p| position(&p.path));
}

/// Numbers every key path of `value` in file order: its own number and the last in it.
fn number(
    order: &mut HashMap<String, (usize, usize)>,
    next: &mut usize,
    path: &str,
    value: &Value,
) {
    *next += 1;
    let start = *next;
    match value {
        Value::Table(t) => {
            for (key, v) in t {
                number(order, next, &join(path, key), v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                number(order, next, &format!("{path}[{i}]"), v);
            }
        }
        _ => {}
    }
    order.insert(path.to_string(), (start, *next));
}

/// `#[serde(with = "de::duration")]`: `"30s"`.
pub(crate) mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_duration(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// `#[serde(with = "de::duration_opt")]`: an optional `"30s"`.
pub(crate) mod duration_opt {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// `#[serde(with = "de::size")]`: `"128MiB"` in bytes.
pub(crate) mod size {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        parse_size(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// `#[serde(with = "de::size_opt")]`: an optional `"128MiB"`.
pub(crate) mod size_opt {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        super::size::deserialize(d).map(Some)
    }
}

/// A list, or one string standing for a list of one (`listen = "0.0.0.0:80"`, as an
/// `EDGE__HTTP__LISTEN` override is written).
pub(crate) fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct List<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_str<E: de::Error>(self, one: &str) -> Result<Vec<T>, E> {
            T::deserialize(one.to_string().into_deserializer()).map(|t| vec![t])
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(List(std::marker::PhantomData))
}

/// Networks: `["10.0.0.0/8", "192.168.1.7"]` (an address alone is a network of one) or one.
pub(crate) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    struct Network(ipnet::IpNet);
    impl<'de> Deserialize<'de> for Network {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            net.map(Network).map_err(|_| {
                de::Error::custom(format!(
                    "`{text}` is not an address or network like \"10.0.0.0/8\""
                ))
            })
        }
    }
    Ok(one_or_many::<D, Network>(d)?.into_iter().map(|n| n.0).collect())
}

/// Listen addresses: `["0.0.0.0:8080"]` or one address.
pub(crate) fn addresses<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    struct Address(std::net::SocketAddr);
    impl<'de> Deserialize<'de> for Address {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            text.parse().map(Address).map_err(|_| {
                de::Error::custom(format!("`{text}` is not an address like \"0.0.0.0:8080\""))
            })
        }
    }
    Ok(one_or_many::<D, Address>(d)?.into_iter().map(|a| a.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_words_become_config_words() {
        assert_eq!(
            plain("invalid type: integer `42`, expected a string"),
            "expected a string, found an integer"
        );
        assert_eq!(
            plain("invalid type: string \"x\", expected struct HttpConfig"),
            "expected a table, found a string"
        );
        assert_eq!(plain("invalid value: integer `-1`, expected usize"), "-1 is out of range");
        assert_eq!(
            plain("unknown field `colour`, expected one of `name`, `entry`, `routes`"),
            "unknown key (expected one of: name, entry, routes)"
        );
        assert_eq!(
            plain("unknown field `x`, expected `a` or `b`"),
            "unknown key (expected one of: a, b)"
        );
        assert_eq!(plain("unknown field `x`, there are no fields"), "unknown key");
    }

    #[test]
    fn indexes_count_items_already_taken_out() {
        assert_eq!(original_index(&[], 1), 1);
        assert_eq!(original_index(&[1], 1), 2);
        assert_eq!(original_index(&[0, 2], 1), 3);
        let removed = Removed(HashMap::from([
            ("grants".to_string(), vec![0, 1]),
            ("grants[2].to".to_string(), vec![0]),
        ]));
        assert_eq!(removed.in_file("grants[0].to[0]"), "grants[2].to[1]");
        assert_eq!(removed.in_file("routes[1]"), "routes[1]");
    }
}
