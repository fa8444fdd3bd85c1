//! What buckets and tables hold and answer, whichever backend keeps them.

use serde::{Deserialize, Serialize};

/// The largest object accepted.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024 * 1024;
/// The largest record accepted (its JSON text).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// An object's metadata; its content is `data_dir/blobs/<etag>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub etag: String,
    #[serde(rename = "contentType")]
    pub content_type: String,
    pub uploaded: u64,
}

/// A listing page.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; `None` on the last one.
    pub cursor: Option<String>,
}

/// Collects one listing page: at most `limit` items, noting whether more follow.
pub struct PageBuilder<T> {
    items: Vec<(String, T)>,
    limit: usize,
    more: bool,
}

impl<T> PageBuilder<T> {
    pub fn new(limit: usize) -> PageBuilder<T> {
        PageBuilder { items: Vec::new(), limit, more: false }
    }

    /// Adds the next item; `false` when the page is full (the item is then left out, and the
    /// page says more follow).
    pub fn offer(&mut self, key: String, item: T) -> bool {
        if self.items.len() == self.limit {
            self.more = true;
            return false;
        }
        self.items.push((key, item));
        true
    }

    pub fn finish(self) -> Page<(String, T)> {
        let cursor = self.more.then(|| self.items.last().map(|(k, _)| k.clone())).flatten();
        Page { items: self.items, cursor }
    }
}
