//! The customers' RSA public keys for the JWE scenarios: one distinct key per customer, as in
//! production, so that the consumer wraps one content key per customer.
//!
//! A 4096-bit key takes seconds to generate, so the public halves are cached on disk (the
//! private halves are never written: nothing in a benchmark decrypts) and reused by later runs.

use std::path::{Path, PathBuf};

use hookline_core::customer::StoredPublicKey;
use hookline_wire::PrivateKey;

use crate::{Error, Result};

/// The default cache: `$HOOKLINE_TOOLS_DIR/../bench-keys`, i.e. `~/.cache/hookline/bench-keys`.
pub fn default_cache() -> PathBuf {
    let tools = std::env::var_os("HOOKLINE_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/hookline/tools")));
    tools
        .and_then(|dir| dir.parent().map(|parent| parent.join("bench-keys")))
        .unwrap_or_else(|| std::env::temp_dir().join("hookline-bench-keys"))
}

/// `count` distinct public keys of `bits` bits, from `cache` or generated (on every core) and
/// cached.
pub fn public_keys(cache: &Path, bits: usize, count: usize) -> Result<Vec<StoredPublicKey>> {
    let dir = cache.join(format!("rsa-{bits}"));
    std::fs::create_dir_all(&dir)?;
    let path = |n: usize| dir.join(format!("{n:04}.pub.pem"));
    let missing: Vec<usize> = (0..count).filter(|n| !path(*n).is_file()).collect();
    if !missing.is_empty() {
        eprintln!("generating {} {bits}-bit RSA keys into {} (once)", missing.len(), dir.display());
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let chunks: Vec<Vec<usize>> = missing.chunks(missing.len().div_ceil(threads)).map(<[usize]>::to_vec).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let path = &path;
                    scope.spawn(move || -> Result<()> {
                        for n in chunk {
                            let key = PrivateKey::generate(bits)?;
                            // Written aside and renamed, so an interrupted run leaves no half file.
                            let partial = path(n).with_extension("partial");
                            std::fs::write(&partial, key.public_key().to_spki_pem())?;
                            std::fs::rename(partial, path(n))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker.join().map_err(|_| Error::Invalid("a key generation thread panicked".into()))?
            })
        })?;
    }
    (0..count)
        .map(|n| {
            let pem = std::fs::read_to_string(path(n))?;
            Ok(StoredPublicKey::from_pem(&pem)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_keys_once_then_reads_them_back() {
        let cache = std::env::temp_dir().join(format!("hookline-bench-keys-test-{}", std::process::id()));
        let first = public_keys(&cache, 2048, 2).unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0].kid, first[1].kid);
        assert!(first.iter().all(|key| key.bits == 2048));
        let again = public_keys(&cache, 2048, 2).unwrap();
        assert_eq!(again, first, "read from the cache, not generated again");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
