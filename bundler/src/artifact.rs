//! The bundle file: one artifact a node stores and ships.
//!
//! ```text
//! "ISOLABDL" | u32 LE manifest length | manifest (JSON)
//! then per module, in manifest order: u32 LE length | lz4 block of the code
//!                                     [u32 LE length | lz4 block of the source map]
//! then optionally:  "ISOLACCP" | u32 LE length | a code cache pack
//! ```
//!
//! The code cache pack (V8's compiled form of the modules, made by `edge-node bundle` or by
//! the node that took a deploy) is opaque here and outside the content hash: it is derived
//! from the modules, and its reader checks it on its own.
//!
//! Decoding checks everything before a bundle is returned: the magic, the format, every length
//! against the file and against [`MAX_BUNDLE_BYTES`], each module's SHA-256 and the content
//! hash over the whole. Any failure refuses the whole bundle.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::bundle::{hex, Bundle, Manifest, Module, FORMAT};
use crate::{BundleError, MAX_BUNDLE_BYTES};

const MAGIC: &[u8; 8] = b"ISOLABDL";
const CODE_CACHE_MAGIC: &[u8; 8] = b"ISOLACCP";
/// The largest manifest accepted.
const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

impl Bundle {
    /// Writes the bundle as one artifact.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_code_cache(None)
    }

    /// Writes the bundle as one artifact carrying a code cache pack after its modules.
    pub fn encode_with_code_cache(&self, code_cache: Option<&[u8]>) -> Vec<u8> {
        let manifest = serde_json::to_vec(self.manifest()).expect("a manifest serialises");
        let mut out = Vec::with_capacity(self.size() as usize / 2 + manifest.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        out.extend_from_slice(&manifest);
        for module in self.modules() {
            block(&mut out, module.code.as_bytes());
            if let Some(map) = &module.source_map {
                block(&mut out, map);
            }
        }
        if let Some(pack) = code_cache {
            out.extend_from_slice(CODE_CACHE_MAGIC);
            out.extend_from_slice(&(pack.len() as u32).to_le_bytes());
            out.extend_from_slice(pack);
        }
        out
    }

    /// Reads an artifact written by [`Bundle::encode`], refusing it whole if anything is off.
    /// A code cache pack it carries is passed over.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        Bundle::decode_with_code_cache(bytes).map(|(bundle, _)| bundle)
    }

    /// Reads an artifact and the code cache pack it carries, if any (unchecked: its reader
    /// checks it).
    pub fn decode_with_code_cache(bytes: &[u8]) -> Result<(Bundle, Option<&[u8]>), BundleError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(BundleError::NotABundle);
        }
        let len = r.u32()? as usize;
        if len > MAX_MANIFEST_BYTES {
            return Err(BundleError::TooLarge { limit: MAX_BUNDLE_BYTES });
        }
        let manifest: Manifest = serde_json::from_slice(r.take(len)?)
            .map_err(|e| BundleError::Corrupt(format!("manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(BundleError::UnsupportedFormat(manifest.format));
        }
        let declared: u64 = manifest
            .modules
            .iter()
            .map(|m| m.size.saturating_add(m.source_map_size.unwrap_or(0)))
            .fold(0u64, u64::saturating_add);
        if declared > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { limit: MAX_BUNDLE_BYTES });
        }
        let mut modules = BTreeMap::new();
        for info in &manifest.modules {
            let code = r.block(info.size, &info.path)?;
            let code = String::from_utf8(code)
                .map_err(|_| BundleError::Corrupt(format!("{} is not UTF-8", info.path)))?;
            if hex(&Sha256::digest(code.as_bytes())) != info.hash {
                return Err(BundleError::Corrupt(format!(
                    "{} does not match its hash in the manifest",
                    info.path
                )));
            }
            let source_map = match info.source_map_size {
                Some(size) => Some(Arc::from(r.block(size, &info.path)?)),
                None => None,
            };
            let module = Module { info: info.clone(), code: Arc::from(code), source_map };
            if modules.insert(info.path.clone(), module).is_some() {
                return Err(BundleError::Corrupt(format!("{} is listed twice", info.path)));
            }
        }
        let mut code_cache = None;
        if r.at != bytes.len() {
            if r.take(CODE_CACHE_MAGIC.len()).ok() != Some(&CODE_CACHE_MAGIC[..]) {
                return Err(BundleError::Corrupt("unknown data after the last module".into()));
            }
            let len = r.u32()? as usize;
            code_cache = Some(r.take(len)?);
            if r.at != bytes.len() {
                return Err(BundleError::Corrupt(format!(
                    "{} bytes after the code cache",
                    bytes.len() - r.at
                )));
            }
        }
        Ok((Bundle::from_parts(manifest, modules)?, code_cache))
    }
}

fn block(out: &mut Vec<u8>, data: &[u8]) {
    let compressed = lz4_flex::block::compress(data);
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    out.extend_from_slice(&compressed);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BundleError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(BundleError::Truncated)?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, BundleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// One lz4 block that must decompress to exactly `size` bytes.
    fn block(&mut self, size: u64, path: &str) -> Result<Vec<u8>, BundleError> {
        let len = self.u32()? as usize;
        let compressed = self.take(len)?;
        let out = lz4_flex::block::decompress(compressed, size as usize)
            .map_err(|e| BundleError::Corrupt(format!("{path}: {e}")))?;
        if out.len() as u64 != size {
            return Err(BundleError::Corrupt(format!("{path}: wrong size")));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        let mut sources = BTreeMap::new();
        sources.insert("src/index.js".to_string(), Arc::from("export default { fetch() {} }"));
        sources.insert("src/data.json".to_string(), Arc::from("{\"a\": 1}"));
        Bundle::from_sources("f", "src/index.js", sources).unwrap()
    }

    #[test]
    fn round_trips() {
        let bundle = sample();
        let bytes = bundle.encode();
        let back = Bundle::decode(&bytes).unwrap();
        assert_eq!(back.hash(), bundle.hash());
        assert_eq!(back.manifest(), bundle.manifest());
        assert_eq!(back.source("src/data.json").unwrap().as_ref(), "{\"a\": 1}");
    }

    #[test]
    fn refuses_every_truncation() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let err = Bundle::decode(&bytes[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    BundleError::Truncated | BundleError::NotABundle | BundleError::Corrupt(_)
                ),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn refuses_tampering() {
        let bundle = sample();
        let bytes = bundle.encode();
        // The name inside the manifest: the content hash no longer matches.
        let manifest_end = 12 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let mut manifest = bundle.manifest().clone();
        manifest.name = "g".to_string();
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut renamed = MAGIC.to_vec();
        renamed.extend_from_slice(&(json.len() as u32).to_le_bytes());
        renamed.extend_from_slice(&json);
        renamed.extend_from_slice(&bytes[manifest_end..]);
        let err = Bundle::decode(&renamed).unwrap_err();
        assert!(matches!(err, BundleError::HashMismatch { .. }), "{err}");
        // Any single byte of the module blocks.
        for at in manifest_end..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(Bundle::decode(&bad).is_err(), "flipping byte {at} went unnoticed");
        }
        // Trailing data.
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(Bundle::decode(&long), Err(BundleError::Corrupt(_))));
        assert!(matches!(Bundle::decode(b"PK\x03\x04 a zip"), Err(BundleError::NotABundle)));
    }

    #[test]
    fn carries_a_code_cache_outside_the_hash() {
        let bundle = sample();
        let bytes = bundle.encode_with_code_cache(Some(b"compiled"));
        let (back, pack) = Bundle::decode_with_code_cache(&bytes).unwrap();
        assert_eq!((back.hash(), pack), (bundle.hash(), Some(&b"compiled"[..])));
        assert_eq!(Bundle::decode_with_code_cache(&bundle.encode()).unwrap().1, None);
        // A pack cut short, or followed by more, refuses the artifact.
        assert!(matches!(Bundle::decode(&bytes[..bytes.len() - 1]), Err(BundleError::Truncated)));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(Bundle::decode(&long), Err(BundleError::Corrupt(_))));
    }

    #[test]
    fn refuses_declared_sizes_over_the_limit() {
        let bundle = sample();
        let mut manifest = bundle.manifest().clone();
        manifest.modules[0].size = MAX_BUNDLE_BYTES + 1;
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        assert!(matches!(Bundle::decode(&bytes), Err(BundleError::TooLarge { .. })));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any bytes: refused or read, never a panic.
            #[test]
            fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let _ = Bundle::decode(&bytes);
            }

            /// A real artifact with bytes changed, cut or added: refused, or read back to a
            /// bundle that encodes to what it read.
            #[test]
            fn a_mangled_artifact_is_refused_or_consistent(
                at in any::<prop::sample::Index>(),
                value in any::<u8>(),
                cut in any::<prop::sample::Index>(),
                grow in proptest::collection::vec(any::<u8>(), 0..8),
            ) {
                let mut bytes = sample().encode();
                let i = at.index(bytes.len());
                bytes[i] = value;
                bytes.truncate(cut.index(bytes.len() + 1).max(1));
                bytes.extend_from_slice(&grow);
                if let Ok(bundle) = Bundle::decode(&bytes) {
                    let again = Bundle::decode(&bundle.encode()).unwrap();
                    prop_assert_eq!(again.hash(), bundle.hash());
                }
            }
        }
    }
}
