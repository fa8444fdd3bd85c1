//! Reads typed values out of a parsed TOML table, collecting a [`Problem`] for every key that
//! is missing, mistyped, malformed or unknown instead of stopping at the first.

use std::time::Duration;

use toml::{Table, Value};

use crate::units::{parse_duration, parse_size};
use crate::Problem;

#[derive(Default)]
pub(crate) struct Reader {
    pub problems: Vec<Problem>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl Reader {
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    /// Reports every key of `table` that is not in `known`.
    pub fn deny_unknown(&mut self, table: &Table, path: &str, known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    join(path, key),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn typed<'t, T>(
        &mut self,
        table: &'t Table,
        path: &str,
        key: &str,
        want: &str,
        pick: impl FnOnce(&'t Value) -> Option<T>,
    ) -> Option<T> {
        let value = table.get(key)?;
        let picked = pick(value);
        if picked.is_none() {
            self.problem(join(path, key), format!("expected {want}, found {}", type_name(value)));
        }
        picked
    }

    pub fn table<'t>(&mut self, table: &'t Table, path: &str, key: &str) -> Option<&'t Table> {
        self.typed(table, path, key, "a table", Value::as_table)
    }

    pub fn string(&mut self, table: &Table, path: &str, key: &str) -> Option<String> {
        self.typed(table, path, key, "a string", |v| v.as_str().map(str::to_owned))
    }

    pub fn bool(&mut self, table: &Table, path: &str, key: &str) -> Option<bool> {
        self.typed(table, path, key, "a boolean", Value::as_bool)
    }

    pub fn integer(&mut self, table: &Table, path: &str, key: &str) -> Option<i64> {
        self.typed(table, path, key, "an integer", Value::as_integer)
    }

    /// The strings of an array, each with its index (for problem paths); a non-string item
    /// is reported and skipped. A single string stands for a list of one.
    pub fn string_list(
        &mut self,
        table: &Table,
        path: &str,
        key: &str,
    ) -> Option<Vec<(usize, String)>> {
        if let Some(Value::String(one)) = table.get(key) {
            return Some(vec![(0, one.clone())]);
        }
        let items = self.typed(table, path, key, "an array of strings", Value::as_array)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push((i, s.to_owned())),
                None => self.problem(
                    format!("{}[{i}]", join(path, key)),
                    format!("expected a string, found {}", type_name(item)),
                ),
            }
        }
        Some(out)
    }

    pub fn duration(&mut self, table: &Table, path: &str, key: &str) -> Option<Duration> {
        let text = self.string(table, path, key)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(join(path, key), e);
                None
            }
        }
    }

    pub fn size(&mut self, table: &Table, path: &str, key: &str) -> Option<u64> {
        let text = self.string(table, path, key)?;
        match parse_size(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(join(path, key), e);
                None
            }
        }
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
