//! Who owns each queue, bucket and table, and whether a set of functions uses only what it owns
//! or is granted.
//!
//! A resource belongs to the function that claimed it first; claims are kept by the backend
//! (they outlive the function, so a function deployed later under another name cannot adopt
//! a deleted function's data). A resource no one has claimed yet goes to the function that
//! grants it, or else to the one that consumes it (a queue), or else to the only function
//! naming it; two functions naming it with neither of these is a problem, not a race.
//!
//! Another function reaches a resource only through a grant in its owner's edge.toml, read or
//! write; a queue is consumed only by its owner. The checks are made over the whole set of
//! functions that would be served, so a deploy that drops a grant still in use, or deletes an
//! owner whose grants are in use, is refused too.

use std::collections::{BTreeMap, BTreeSet};

use config::{Access, EdgeConfig, Resource, Use};

/// One function's use that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The function whose use (or grant) is refused.
    pub function: String,
    /// The resource's owner, when it has one.
    pub owner: Option<String>,
    pub message: String,
}

impl Refusal {
    /// Whether the refusal concerns `function`, as user or as owner.
    pub fn involves(&self, function: &str) -> bool {
        self.function == function || self.owner.as_deref() == Some(function)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "function `{}`: {}", self.function, self.message)
    }
}

/// The owners of every resource `functions` name, and every use among them that is not
/// allowed. `claimed` holds the owners already recorded; the returned owners include them.
pub fn resolve(
    functions: &[&EdgeConfig],
    claimed: &BTreeMap<Resource, String>,
) -> (BTreeMap<Resource, String>, Vec<Refusal>) {
    let mut refusals = Vec::new();
    let mut owners = claimed.clone();
    // Who could own each unclaimed resource, best first: its granters, consumers, namers.
    let mut candidates: BTreeMap<Resource, [BTreeSet<&str>; 3]> = BTreeMap::new();
    for f in functions {
        let name = f.name.as_str();
        for grant in &f.grants {
            candidates.entry(grant.resource.clone()).or_default()[0].insert(name);
        }
        for (resource, how) in uses(f) {
            let c = candidates.entry(resource).or_default();
            if how == Use::Consume {
                c[1].insert(name);
            }
            c[2].insert(name);
        }
    }
    for (resource, [granters, consumers, namers]) in candidates {
        if owners.contains_key(&resource) {
            continue;
        }
        let best = [&granters, &consumers, &namers].into_iter().find(|c| !c.is_empty());
        match best.map(|c| c.iter().copied().collect::<Vec<_>>()) {
            Some(one) if one.len() == 1 => {
                owners.insert(resource.clone(), one[0].to_string());
            }
            Some(several) => {
                for function in &several {
                    refusals.push(Refusal {
                        function: function.to_string(),
                        owner: None,
                        message: format!(
                            "{resource} is also named by {}, and which function owns it is not said: its owner grants it to the others in [[grants]]",
                            list(several.iter().filter(|f| *f != function))
                        ),
                    });
                }
            }
            None => {}
        }
    }
    let by_name: BTreeMap<&str, &EdgeConfig> =
        functions.iter().map(|f| (f.name.as_str(), *f)).collect();
    for f in functions {
        let name = f.name.as_str();
        let refuse = |owner: &str, message: String| Refusal {
            function: name.to_string(),
            owner: Some(owner.to_string()),
            message,
        };
        for grant in &f.grants {
            match owners.get(&grant.resource) {
                Some(owner) if owner != name => refusals.push(refuse(
                    owner,
                    format!("grants {}, which belongs to function `{owner}`", grant.resource),
                )),
                _ => {}
            }
        }
        for (resource, how) in uses(f) {
            let Some(owner) = owners.get(&resource) else { continue };
            if owner == name {
                continue;
            }
            let refusal = match (how, by_name.get(owner.as_str())) {
                (Use::Consume, _) => format!(
                    "consumes {resource}, which belongs to function `{owner}`: a queue is consumed by its owner only"
                ),
                (_, None) => format!(
                    "{resource} belongs to function `{owner}`, which is not deployed to grant it"
                ),
                (_, Some(owner_config)) => match owner_config.grant_to(name, &resource) {
                    Some(access) if how.granted_by(access) => continue,
                    Some(Access::Read) => format!(
                        "{resource} belongs to function `{owner}`, which grants it read access only: bind it with access = \"read\""
                    ),
                    _ => format!(
                        "{resource} belongs to function `{owner}`, whose edge.toml grants `{name}` no {} access to it",
                        how.as_str()
                    ),
                },
            };
            refusals.push(refuse(owner, refusal));
        }
    }
    (owners, refusals)
}

/// What `f` uses, each resource once with its most demanding use.
fn uses(f: &EdgeConfig) -> BTreeMap<Resource, Use> {
    let mut by_resource: BTreeMap<Resource, Use> = BTreeMap::new();
    for (resource, how) in f.uses() {
        let entry = by_resource.entry(resource).or_insert(how);
        *entry = (*entry).max(how);
    }
    by_resource
}

fn list<'a>(names: impl Iterator<Item = &'a &'a str>) -> String {
    names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use config::Kind;

    use super::*;

    fn function(text: &str) -> EdgeConfig {
        EdgeConfig::parse(&format!("entry = \"index.js\"\n{text}"), Path::new("/fn")).unwrap()
    }

    fn messages(refusals: &[Refusal]) -> Vec<String> {
        refusals.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn a_function_reaches_another_functions_data_only_through_a_grant() {
        let victim = function(
            "name = \"victim\"\n[bindings]\nFILES = { bucket = \"victim-files\" }\nUSERS = { table = \"victim-users\" }\n[[triggers.queue]]\nqueue = \"victim-jobs\"",
        );
        let attacker = function(
            "name = \"attacker\"\n[bindings]\nLOOT = { bucket = \"victim-files\" }\nPII = { table = \"victim-users\" }\nINJECT = { queue = \"victim-jobs\" }\n[[triggers.queue]]\nqueue = \"victim-jobs\"",
        );
        // The victim came first: its resources are claimed.
        let (claimed, refusals) = resolve(&[&victim], &BTreeMap::new());
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(claimed[&Resource::new(Kind::Bucket, "victim-files")], "victim");
        let (_, refusals) = resolve(&[&victim, &attacker], &claimed);
        assert_eq!(
            messages(&refusals),
            [
                "function `attacker`: consumes queue `victim-jobs`, which belongs to function `victim`: a queue is consumed by its owner only",
                "function `attacker`: bucket `victim-files` belongs to function `victim`, whose edge.toml grants `attacker` no write access to it",
                "function `attacker`: table `victim-users` belongs to function `victim`, whose edge.toml grants `attacker` no write access to it",
            ]
        );
        assert!(refusals.iter().all(|r| r.involves("attacker") && r.involves("victim")));
    }

    #[test]
    fn a_grant_shares_a_queue_and_a_read_grant_allows_reading_only() {
        let worker = function(
            "name = \"worker\"\n[[triggers.queue]]\nqueue = \"jobs\"\n[bindings]\nFILES = { bucket = \"files\" }\n[[grants]]\nqueue = \"jobs\"\nto = \"web\"\naccess = \"write\"\n[[grants]]\nbucket = \"files\"\nto = \"web\"\naccess = \"read\"",
        );
        let web = function(
            "name = \"web\"\n[bindings]\nJOBS = { queue = \"jobs\" }\nFILES = { bucket = \"files\", access = \"read\" }",
        );
        // Nothing claimed yet, web listed first: the grants say who owns what.
        let (owners, refusals) = resolve(&[&web, &worker], &BTreeMap::new());
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(owners[&Resource::new(Kind::Queue, "jobs")], "worker");
        assert_eq!(owners[&Resource::new(Kind::Bucket, "files")], "worker");

        let writer = function("name = \"web\"\n[bindings]\nFILES = { bucket = \"files\" }");
        let (_, refusals) = resolve(&[&writer, &worker], &owners);
        assert_eq!(
            messages(&refusals),
            ["function `web`: bucket `files` belongs to function `worker`, which grants it read access only: bind it with access = \"read\""]
        );
    }

    #[test]
    fn dropping_a_grant_in_use_or_the_owner_is_refused() {
        let worker = function("name = \"worker\"\n[[triggers.queue]]\nqueue = \"jobs\"\n[[grants]]\nqueue = \"jobs\"\nto = \"web\"\naccess = \"write\"");
        let web = function("name = \"web\"\n[bindings]\nJOBS = { queue = \"jobs\" }");
        let (owners, refusals) = resolve(&[&worker, &web], &BTreeMap::new());
        assert!(refusals.is_empty());
        // A new version of the worker without the grant.
        let ungranting = function("name = \"worker\"\n[[triggers.queue]]\nqueue = \"jobs\"");
        let (_, refusals) = resolve(&[&ungranting, &web], &owners);
        assert_eq!(refusals.len(), 1);
        assert!(refusals[0].involves("worker"), "{refusals:?}");
        // The worker deleted: its queue stays its own, out of everyone else's reach.
        let (_, refusals) = resolve(&[&web], &owners);
        assert_eq!(
            messages(&refusals),
            ["function `web`: queue `jobs` belongs to function `worker`, which is not deployed to grant it"]
        );
        assert!(refusals[0].involves("worker"));
    }

    #[test]
    fn two_functions_naming_a_resource_without_a_grant_is_a_problem_not_a_race() {
        let a = function("name = \"a\"\n[bindings]\nT = { table = \"t\" }");
        let b = function("name = \"b\"\n[bindings]\nT = { table = \"t\" }");
        let (owners, refusals) = resolve(&[&a, &b], &BTreeMap::new());
        assert!(!owners.contains_key(&Resource::new(Kind::Table, "t")));
        assert_eq!(refusals.len(), 2, "{refusals:?}");
        assert!(refusals[0].message.contains("also named by `b`"), "{refusals:?}");
        // Two consumers of one queue: the same.
        let c1 = function("name = \"c1\"\n[[triggers.queue]]\nqueue = \"q\"");
        let c2 = function("name = \"c2\"\n[[triggers.queue]]\nqueue = \"q\"");
        assert_eq!(resolve(&[&c1, &c2], &BTreeMap::new()).1.len(), 2);
        // A grant of something another function owns.
        let thief =
            function("name = \"thief\"\n[[grants]]\ntable = \"t\"\nto = \"b\"\naccess = \"write\"");
        let claimed = BTreeMap::from([(Resource::new(Kind::Table, "t"), "a".to_string())]);
        let (_, refusals) = resolve(&[&a, &thief], &claimed);
        assert_eq!(
            messages(&refusals),
            ["function `thief`: grants table `t`, which belongs to function `a`"]
        );
    }
}
