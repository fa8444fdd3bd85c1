//! What a function may reach besides its own code: `[bindings]` (`env.NAME` for a queue, a
//! bucket or a table), and `[[grants]]`, what it lets other functions reach of its own.
//!
//! A queue, bucket or table belongs to the function that named it first; another function
//! reaches it only through a grant in the owner's edge.toml (the node checks this when it
//! serves or deploys a function, see `edge-node`'s `functions::access`).

use std::fmt;

use serde::Deserialize;

use crate::triggers::{not_a_name, valid_queue_name};
use crate::EdgeConfig;

/// What kind of thing a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Queue,
    Bucket,
    Table,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Bucket => "bucket",
            Kind::Table => "table",
        }
    }
}

/// A named queue, bucket or table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    pub kind: Kind,
    pub name: String,
}

impl Resource {
    pub fn new(kind: Kind, name: &str) -> Resource {
        Resource { kind, name: name.to_string() }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind.as_str(), self.name)
    }
}

/// How much of a resource a binding or a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// A bucket's or table's `get` and `list`, and its storage or record trigger.
    Read,
    /// Read, and `put` and `delete`; a queue's `send`.
    #[default]
    Write,
}

/// `[bindings]`: `env.NAME` of the function.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Named")]
pub struct Binding {
    pub resource: Resource,
    /// `access = "read"`: only `get` and `list` (a read grant allows no more).
    pub access: Access,
}

impl Binding {
    pub fn new(kind: Kind, name: &str) -> Binding {
        Binding { resource: Resource::new(kind, name), access: Access::Write }
    }
}

/// `[[grants]]`: a resource of this function that other functions may reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Named")]
pub struct Grant {
    pub resource: Resource,
    /// The functions it is granted to.
    pub to: Vec<String>,
    /// `"read"` or `"write"`; a queue is granted `"write"` (send): only its owner consumes it.
    pub access: Access,
}

/// A binding or a grant as written: exactly one of `queue`, `bucket` and `table`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    queue: Option<String>,
    bucket: Option<String>,
    table: Option<String>,
    access: Option<Access>,
    #[serde(default, deserialize_with = "some_list")]
    to: Option<Vec<String>>,
}

fn some_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    crate::de::one_or_many(d).map(Some)
}

impl Named {
    fn resource(&self) -> Result<Resource, String> {
        let (kind, name) = match (&self.queue, &self.bucket, &self.table) {
            (Some(queue), None, None) => (Kind::Queue, queue),
            (None, Some(bucket), None) => (Kind::Bucket, bucket),
            (None, None, Some(table)) => (Kind::Table, table),
            _ => {
                return Err(
                    "names one thing: queue = \"...\", bucket = \"...\" or table = \"...\"".into()
                )
            }
        };
        if !valid_queue_name(name) {
            return Err(not_a_name(name));
        }
        Ok(Resource::new(kind, name))
    }
}

impl TryFrom<Named> for Binding {
    type Error = String;

    fn try_from(named: Named) -> Result<Binding, String> {
        let resource = named.resource()?;
        if named.to.is_some() {
            return Err("`to` belongs in a [[grants]] entry, not a binding".into());
        }
        let access = named.access.unwrap_or_default();
        if resource.kind == Kind::Queue && access == Access::Read {
            return Err("a queue binding sends: it cannot be read-only".into());
        }
        Ok(Binding { resource, access })
    }
}

impl TryFrom<Named> for Grant {
    type Error = String;

    fn try_from(named: Named) -> Result<Grant, String> {
        let resource = named.resource()?;
        let to = named.to.unwrap_or_default();
        if to.is_empty() {
            return Err("missing `to` (the functions it is granted to)".into());
        }
        let Some(access) = named.access else {
            return Err("missing `access` (\"read\" or \"write\")".into());
        };
        if resource.kind == Kind::Queue && access == Access::Read {
            return Err("a queue is granted \"write\" (send); only its owner consumes it".into());
        }
        Ok(Grant { resource, to, access })
    }
}

/// How a function uses a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Use {
    /// Reads it (a read-only binding, a storage or record trigger).
    Read,
    /// Writes it (a binding, a queue its consumer dead-letters to).
    Write,
    /// Consumes a queue (`[[triggers.queue]]`): only its owner does.
    Consume,
}

impl Use {
    /// Whether a grant of `access` allows this use.
    pub fn granted_by(self, access: Access) -> bool {
        match self {
            Use::Read => true,
            Use::Write => access == Access::Write,
            Use::Consume => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Use::Read => "read",
            Use::Write => "write",
            Use::Consume => "consume",
        }
    }
}

impl EdgeConfig {
    /// Every resource the function uses, with how; one entry per resource and use.
    pub fn uses(&self) -> Vec<(Resource, Use)> {
        let mut uses: Vec<(Resource, Use)> = self
            .bindings
            .values()
            .map(|b| {
                let how = if b.access == Access::Read { Use::Read } else { Use::Write };
                (b.resource.clone(), how)
            })
            .collect();
        let t = &self.triggers;
        uses.extend(t.queue.iter().map(|q| (Resource::new(Kind::Queue, &q.queue), Use::Consume)));
        uses.extend(t.queue.iter().filter_map(|q| {
            Some((Resource::new(Kind::Queue, q.dead_letter_queue.as_deref()?), Use::Write))
        }));
        uses.extend(t.storage.iter().map(|s| (Resource::new(Kind::Bucket, &s.bucket), Use::Read)));
        uses.extend(t.record.iter().map(|r| (Resource::new(Kind::Table, &r.table), Use::Read)));
        uses.sort();
        uses.dedup();
        uses
    }

    /// The access this function's grants give `function` to `resource`, if any.
    pub fn grant_to(&self, function: &str, resource: &Resource) -> Option<Access> {
        self.grants
            .iter()
            .filter(|g| g.resource == *resource && g.to.iter().any(|t| t == function))
            .map(|g| g.access)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn grants_and_read_only_bindings() {
        let c = EdgeConfig::parse(
            r#"
name = "worker"
entry = "index.js"
[bindings]
FILES = { bucket = "files", access = "read" }
OUT = { queue = "results" }
[[grants]]
queue = "jobs"
to = ["web", "api"]
access = "write"
[[grants]]
bucket = "files"
to = "web"
access = "read"
[[triggers.queue]]
queue = "jobs"
dead_letter_queue = "jobs-dlq"
"#,
            Path::new("/fn"),
        )
        .unwrap();
        assert_eq!(c.bindings["FILES"].access, Access::Read);
        assert_eq!(c.bindings["OUT"].access, Access::Write);
        let jobs = Resource::new(Kind::Queue, "jobs");
        assert_eq!(c.grant_to("api", &jobs), Some(Access::Write));
        assert_eq!(c.grant_to("other", &jobs), None);
        assert_eq!(c.grant_to("web", &Resource::new(Kind::Bucket, "files")), Some(Access::Read));
        assert_eq!(
            c.uses(),
            [
                (Resource::new(Kind::Queue, "jobs"), Use::Consume),
                (Resource::new(Kind::Queue, "jobs-dlq"), Use::Write),
                (Resource::new(Kind::Queue, "results"), Use::Write),
                (Resource::new(Kind::Bucket, "files"), Use::Read),
            ]
        );
    }

    #[test]
    fn every_grant_problem() {
        let problems = EdgeConfig::parse(
            r#"
name = "worker"
entry = "index.js"
[bindings]
Q = { queue = "q", access = "read" }
[[grants]]
queue = "jobs"
to = "web"
access = "read"
[[grants]]
bucket = "files"
access = "write"
[[grants]]
table = "t"
to = ["Bad Name", "worker"]
access = "write"
"#,
            Path::new("/fn"),
        )
        .unwrap_err();
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "bindings.Q: a queue binding sends: it cannot be read-only",
                "grants[0]: a queue is granted \"write\" (send); only its owner consumes it",
                "grants[1]: missing `to` (the functions it is granted to)",
                "grants[2].to[0]: `Bad Name` is not a function name",
                "grants[2].to[1]: a function needs no grant to reach its own resources",
            ]
        );
    }
}
