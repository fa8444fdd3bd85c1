//! The node's durable state in redb (`data_dir/store.redb`): deployed functions, their
//! versions and active pointers, and secrets. Every write is one transaction committed with
//! redb's default (immediate) durability: synced to disk before the call returns, so what the
//! admin API acknowledged survives `kill -9`. Bundles themselves are files beside the store
//! (`caches::Bundles`), written and synced before the version that names them is committed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::backend::sealed::SecretKey;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// name -> [`FunctionRecord`] as JSON.
const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
/// (name, version) -> [`VersionRecord`] as JSON.
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// (name, key) -> value.
const SECRETS: TableDefinition<(&str, &str), &str> = TableDefinition::new("secrets");
/// A value sealed under the node's key when the store was made: the key must still open it.
const KEY_CHECK: TableDefinition<&str, &str> = TableDefinition::new("secrets_key_check");
const CHECK: (&str, &str) = ("__isola", "key-check");
/// `<kind>.<name>` of a queue, bucket or table -> the function that owns it.
const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A record did not decode (written by an incompatible version).
    #[error("store: a record of `{0}` does not decode")]
    Decode(String),
    /// No function of that name is deployed.
    #[error("no function `{0}` is deployed")]
    NoFunction(String),
    /// The function has no kept version with that number.
    #[error("function `{name}` has no version {version}")]
    NoVersion { name: String, version: u64 },
    /// The cluster's store (NATS) failed or cannot be reached.
    #[error("the cluster cannot be reached: {0}")]
    Cluster(String),
    /// A value is larger than the store takes.
    #[error("{0}")]
    TooLarge(String),
    /// Secrets sealed under another key.
    #[error("{0}")]
    Key(String),
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A deployed function: which version serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub name: String,
    /// The version that serves.
    pub active: u64,
    /// The highest version number given out; the next deploy gets `latest + 1`.
    pub latest: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// One immutable version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// The bundle's content hash; its artifact is `data_dir/bundles/<hash>.bundle`.
    pub bundle: String,
    pub entry: String,
    pub modules: usize,
    /// Bytes of code in the bundle.
    pub size: u64,
    /// The edge.toml the bundle carried.
    pub config: String,
    pub deployed_at: String,
    /// Who deployed it, as the client said (`x-isola-deployer`), or `"unknown"`.
    pub deployed_by: String,
}

/// The version a deploy adds, before it has a number.
pub struct NewVersion {
    pub bundle: String,
    pub entry: String,
    pub modules: usize,
    pub size: u64,
    pub config: String,
    pub deployed_by: String,
}

/// What a deploy did.
pub struct Deployed {
    pub version: VersionRecord,
    /// Versions dropped because more than `keep` were kept.
    pub pruned: Vec<u64>,
}

/// The redb database of a node.
#[derive(Clone)]
pub struct Store {
    db: std::sync::Arc<Database>,
    /// What secrets are sealed under.
    key: SecretKey,
}

/// Drops the versions of `name` beyond the newest `keep`, never `active`; returns their numbers.
fn prune_versions(
    versions: &mut redb::Table<(&str, u64), &[u8]>,
    name: &str,
    keep: usize,
    active: u64,
) -> Result<Vec<u64>, StoreError> {
    let mut numbers: Vec<u64> = versions
        .range((name, 0)..=(name, u64::MAX))?
        .map(|entry| entry.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let pruned: Vec<u64> = numbers.into_iter().skip(keep.max(1)).filter(|n| *n != active).collect();
    for n in &pruned {
        versions.remove((name, *n))?;
    }
    Ok(pruned)
}

/// The function `name` and the version a rollback to `to` (`None`: the one before the active
/// one) makes active.
fn rollback_target(
    functions: &impl ReadableTable<&'static str, &'static [u8]>,
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    name: &str,
    to: Option<u64>,
) -> Result<(FunctionRecord, VersionRecord), StoreError> {
    let record: FunctionRecord = match functions.get(name)? {
        Some(v) => decode(v.value(), name)?,
        None => return Err(StoreError::NoFunction(name.to_string())),
    };
    let target = match to {
        Some(n) => n,
        None => match versions.range((name, 0)..(name, record.active))?.next_back() {
            Some(entry) => entry?.0.value().1,
            None => {
                return Err(StoreError::NoVersion {
                    name: name.to_string(),
                    version: record.active.saturating_sub(1),
                })
            }
        },
    };
    match versions.get((name, target))? {
        Some(v) => Ok((record, decode(v.value(), name)?)),
        None => Err(StoreError::NoVersion { name: name.to_string(), version: target }),
    }
}

/// Makes `path` readable and writable by its owner only (mode 0600).
fn restrict_to_owner(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::Db(redb::Error::Io(e)))
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Decode(what.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

impl Store {
    /// Opens (or creates) the store file, whose secrets are sealed under `key`. A store whose
    /// secrets were sealed under another key is refused; secrets written before sealing are
    /// sealed now.
    pub fn open(path: &Path, key: SecretKey) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        // It holds secrets: readable by the node's user only.
        restrict_to_owner(path)?;
        let tx = db.begin_write()?;
        tx.open_table(FUNCTIONS)?;
        tx.open_table(VERSIONS)?;
        {
            let mut check = tx.open_table(KEY_CHECK)?;
            let existing = check.get("check")?.map(|v| v.value().to_string());
            match existing {
                Some(sealed) if key.open(CHECK.0, CHECK.1, &sealed).is_err() => {
                    return Err(StoreError::Key(format!(
                        "{} holds secrets sealed under another key than this node's ([secrets] key_file or its environment variable): start it with the key they were written with",
                        path.display()
                    )));
                }
                Some(_) => {}
                None => {
                    check.insert("check", key.seal(CHECK.0, CHECK.1, "ok").as_str())?;
                }
            }
            let mut secrets = tx.open_table(SECRETS)?;
            let plain: Vec<(String, String, String)> = secrets
                .iter()?
                .filter_map(Result::ok)
                .filter(|(_, v)| !SecretKey::is_sealed(v.value()))
                .map(|(k, v)| {
                    (k.value().0.to_string(), k.value().1.to_string(), v.value().to_string())
                })
                .collect();
            for (function, name, value) in plain {
                secrets.insert(
                    (function.as_str(), name.as_str()),
                    key.seal(&function, &name, &value).as_str(),
                )?;
            }
        }
        tx.commit()?;
        Ok(Store { db: std::sync::Arc::new(db), key })
    }

    /// Seals every secret (and the key check) under `new` instead, in one transaction;
    /// answers how many secrets there were. The store keeps using `new` from then on.
    pub fn rekey(&mut self, new: SecretKey) -> Result<usize, StoreError> {
        let tx = self.db.begin_write()?;
        let count;
        {
            let mut secrets = tx.open_table(SECRETS)?;
            let all: Vec<(String, String, String)> = secrets
                .iter()?
                .map(|entry| {
                    let (k, v) = entry?;
                    let (function, name) = k.value();
                    let value = self.key.open(function, name, v.value()).map_err(|_| {
                        StoreError::Key(format!(
                            "secret {name} of `{function}` does not open with the current key"
                        ))
                    })?;
                    Ok((function.to_string(), name.to_string(), value))
                })
                .collect::<Result<_, StoreError>>()?;
            count = all.len();
            for (function, name, value) in all {
                secrets.insert(
                    (function.as_str(), name.as_str()),
                    new.seal(&function, &name, &value).as_str(),
                )?;
            }
            tx.open_table(KEY_CHECK)?.insert("check", new.seal(CHECK.0, CHECK.1, "ok").as_str())?;
        }
        tx.commit()?;
        self.key = new;
        Ok(count)
    }

    /// `value` sealed for secret `key` of `function` under this node's key.
    pub fn seal(&self, function: &str, key: &str, value: &str) -> String {
        self.key.seal(function, key, value)
    }

    /// The node's secrets key.
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// The database, shared with the queues.
    pub fn database(&self) -> std::sync::Arc<Database> {
        self.db.clone()
    }

    /// Adds a version and makes it the active one, atomically; keeps at most `keep` versions
    /// (the newest ones, the active one always among them).
    pub fn deploy(&self, name: &str, new: NewVersion, keep: usize) -> Result<Deployed, StoreError> {
        let tx = self.db.begin_write()?;
        let deployed = {
            let mut functions = tx.open_table(FUNCTIONS)?;
            let mut versions = tx.open_table(VERSIONS)?;
            let previous: Option<FunctionRecord> = match functions.get(name)? {
                Some(v) => Some(decode(v.value(), name)?),
                None => None,
            };
            let at = now();
            let number = previous.as_ref().map_or(1, |f| f.latest + 1);
            let record = FunctionRecord {
                name: name.to_string(),
                active: number,
                latest: number,
                created_at: previous.map_or_else(|| at.clone(), |f| f.created_at),
                updated_at: at.clone(),
            };
            let version = VersionRecord {
                version: number,
                bundle: new.bundle,
                entry: new.entry,
                modules: new.modules,
                size: new.size,
                config: new.config,
                deployed_at: at,
                deployed_by: new.deployed_by,
            };
            versions.insert((name, number), encode(&version).as_slice())?;
            functions.insert(name, encode(&record).as_slice())?;
            let pruned = prune_versions(&mut versions, name, keep, number)?;
            Deployed { version, pruned }
        };
        tx.commit()?;
        Ok(deployed)
    }

    /// Records a version decided elsewhere (the cluster) and makes it the active one; versions
    /// beyond `keep` (the newest kept) are dropped.
    pub fn apply(
        &self,
        name: &str,
        version: &VersionRecord,
        latest: u64,
        keep: usize,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut functions = tx.open_table(FUNCTIONS)?;
            let mut versions = tx.open_table(VERSIONS)?;
            let previous: Option<FunctionRecord> = match functions.get(name)? {
                Some(v) => Some(decode(v.value(), name)?),
                None => None,
            };
            let at = now();
            let record = FunctionRecord {
                name: name.to_string(),
                active: version.version,
                latest: previous.as_ref().map_or(latest, |f| f.latest.max(latest)),
                created_at: previous.map_or_else(|| at.clone(), |f| f.created_at),
                updated_at: at,
            };
            versions.insert((name, version.version), encode(version).as_slice())?;
            functions.insert(name, encode(&record).as_slice())?;
            prune_versions(&mut versions, name, keep, version.version)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The active version of a function, if it is deployed.
    pub fn active_version(&self, name: &str) -> Result<Option<VersionRecord>, StoreError> {
        let Some((record, versions)) = self.function(name)? else { return Ok(None) };
        Ok(versions.into_iter().find(|v| v.version == record.active))
    }

    /// Makes a kept version the active one; `None` picks the newest version older than the
    /// active one.
    pub fn rollback(&self, name: &str, to: Option<u64>) -> Result<VersionRecord, StoreError> {
        let tx = self.db.begin_write()?;
        let version = {
            let mut functions = tx.open_table(FUNCTIONS)?;
            let versions = tx.open_table(VERSIONS)?;
            let (mut record, version) = rollback_target(&functions, &versions, name, to)?;
            record.active = version.version;
            record.updated_at = now();
            functions.insert(name, encode(&record).as_slice())?;
            version
        };
        tx.commit()?;
        Ok(version)
    }

    /// The version a rollback of `name` to `to` would make active, changing nothing.
    pub fn rollback_target(
        &self,
        name: &str,
        to: Option<u64>,
    ) -> Result<VersionRecord, StoreError> {
        let tx = self.db.begin_read()?;
        let (functions, versions) = (tx.open_table(FUNCTIONS)?, tx.open_table(VERSIONS)?);
        Ok(rollback_target(&functions, &versions, name, to)?.1)
    }

    /// Deletes a function with its versions and secrets. Returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let existed = {
            let mut functions = tx.open_table(FUNCTIONS)?;
            let mut versions = tx.open_table(VERSIONS)?;
            let mut secrets = tx.open_table(SECRETS)?;
            let existed = functions.remove(name)?.is_some();
            versions.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
            secrets.retain(|(f, _), _| f != name)?;
            existed
        };
        tx.commit()?;
        Ok(existed)
    }

    /// A function and its kept versions, newest first.
    pub fn function(
        &self,
        name: &str,
    ) -> Result<Option<(FunctionRecord, Vec<VersionRecord>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let functions = tx.open_table(FUNCTIONS)?;
        let Some(record) = functions.get(name)? else { return Ok(None) };
        let record: FunctionRecord = decode(record.value(), name)?;
        let versions = tx.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for entry in versions.range((name, 0)..=(name, u64::MAX))?.rev() {
            out.push(decode(entry?.1.value(), name)?);
        }
        Ok(Some((record, out)))
    }

    /// The active version of every deployed function.
    pub fn active(&self) -> Result<Vec<(FunctionRecord, VersionRecord)>, StoreError> {
        let tx = self.db.begin_read()?;
        let functions = tx.open_table(FUNCTIONS)?;
        let versions = tx.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for entry in functions.iter()? {
            let (k, v) = entry?;
            let record: FunctionRecord = decode(v.value(), k.value())?;
            let version = versions
                .get((k.value(), record.active))?
                .ok_or_else(|| StoreError::Decode(k.value().to_string()))?;
            let version: VersionRecord = decode(version.value(), k.value())?;
            out.push((record, version));
        }
        Ok(out)
    }

    /// The bundle hashes some kept version names.
    pub fn bundles_in_use(&self) -> Result<HashSet<String>, StoreError> {
        let tx = self.db.begin_read()?;
        let versions = tx.open_table(VERSIONS)?;
        let mut out = HashSet::new();
        for entry in versions.iter()? {
            let (k, v) = entry?;
            let version: VersionRecord = decode(v.value(), k.value().0)?;
            out.insert(version.bundle);
        }
        Ok(out)
    }

    /// Sets a secret of a function (deployed or not yet).
    pub fn set_secret(&self, name: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let sealed = self.key.seal(name, key, value);
        let tx = self.db.begin_write()?;
        tx.open_table(SECRETS)?.insert((name, key), sealed.as_str())?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a secret. Returns whether it was set.
    pub fn unset_secret(&self, name: &str, key: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let existed = tx.open_table(SECRETS)?.remove((name, key))?.is_some();
        tx.commit()?;
        Ok(existed)
    }

    /// A function's secrets, by key.
    /// Every recorded owner, by resource key (`queue.jobs`).
    pub fn owners(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = match tx.open_table(OWNERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (key, owner) = entry?;
            out.insert(key.value().to_string(), owner.value().to_string());
        }
        Ok(out)
    }

    /// Records `function` as the owner of `key` unless one is; returns the owner after.
    pub fn claim(&self, key: &str, function: &str) -> Result<String, StoreError> {
        let tx = self.db.begin_write()?;
        let owner = {
            let mut table = tx.open_table(OWNERS)?;
            let existing = table.get(key)?.map(|o| o.value().to_string());
            match existing {
                Some(owner) => owner,
                None => {
                    table.insert(key, function)?;
                    function.to_string()
                }
            }
        };
        tx.commit()?;
        Ok(owner)
    }

    pub fn secrets(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let tx = self.db.begin_read()?;
        let secrets = tx.open_table(SECRETS)?;
        let mut out = BTreeMap::new();
        for entry in secrets.range((name, "")..)? {
            let (k, v) = entry?;
            let (function, key) = k.value();
            if function != name {
                break;
            }
            let value = self.key.open(function, key, v.value()).map_err(|_| {
                StoreError::Key(format!(
                    "secret {key} of `{function}` does not open with this node's secrets key"
                ))
            })?;
            out.insert(key.to_string(), value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn the_store_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path, SecretKey::from_hex(TEST_KEY, "test").unwrap()).unwrap();
        store.set_secret("f", "KEY", "value").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
        // A store made before (0644) is made private when it is opened again.
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = Store::open(&path, SecretKey::from_hex(TEST_KEY, "test").unwrap()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }

    fn version(bundle: &str) -> NewVersion {
        NewVersion {
            bundle: bundle.into(),
            entry: "index.js".into(),
            modules: 1,
            size: 10,
            config: "name = \"f\"".into(),
            deployed_by: "test".into(),
        }
    }

    #[test]
    fn deploys_rolls_back_prunes_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::random();
        let store = Store::open(&dir.path().join("store.redb"), key.clone()).unwrap();
        for (i, hash) in ["a", "b", "c", "d"].iter().enumerate() {
            let deployed = store.deploy("f", version(hash), 3).unwrap();
            assert_eq!(deployed.version.version, i as u64 + 1);
            assert_eq!(deployed.pruned, if i == 3 { vec![1] } else { vec![] });
        }
        store.deploy("g", version("x"), 3).unwrap();
        let (record, versions) = store.function("f").unwrap().unwrap();
        assert_eq!((record.active, record.latest), (4, 4));
        let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, [4, 3, 2]);

        assert_eq!(store.rollback("f", None).unwrap().bundle, "c");
        assert_eq!(store.rollback("f", Some(2)).unwrap().bundle, "b");
        assert!(matches!(store.rollback("f", None), Err(StoreError::NoVersion { .. })));
        assert!(matches!(store.rollback("f", Some(1)), Err(StoreError::NoVersion { .. })));
        assert!(matches!(store.rollback("nope", None), Err(StoreError::NoFunction(_))));
        let active: Vec<_> =
            store.active().unwrap().into_iter().map(|(f, v)| (f.name, v.bundle)).collect();
        assert_eq!(active, [("f".into(), "b".into()), ("g".into(), "x".into())]);
        // A deploy after a rollback gets the next number, not a reused one.
        assert_eq!(store.deploy("f", version("e"), 3).unwrap().version.version, 5);

        store.set_secret("f", "TOKEN", "t").unwrap();
        store.set_secret("g", "TOKEN", "other").unwrap();
        store.set_secret("f", "API", "a").unwrap();
        let secrets = store.secrets("f").unwrap();
        assert_eq!(
            secrets.into_iter().collect::<Vec<_>>(),
            [("API".to_string(), "a".to_string()), ("TOKEN".to_string(), "t".to_string())]
        );
        assert!(store.unset_secret("f", "API").unwrap());
        assert!(!store.unset_secret("f", "API").unwrap());

        assert!(store.delete("f").unwrap());
        assert!(store.function("f").unwrap().is_none());
        assert!(store.secrets("f").unwrap().is_empty());
        assert_eq!(store.secrets("g").unwrap().len(), 1);
        assert_eq!(store.bundles_in_use().unwrap(), HashSet::from(["x".to_string()]));
        drop(store);
        // Reopened, the same state; with another key, refused.
        let store = Store::open(&dir.path().join("store.redb"), key).unwrap();
        assert_eq!(store.active().unwrap().len(), 1);
        assert_eq!(store.secrets("g").unwrap().len(), 1);
        drop(store);
        let refused = Store::open(&dir.path().join("store.redb"), SecretKey::random());
        assert!(matches!(refused, Err(StoreError::Key(_))), "{:?}", refused.err());
    }
}
