//! `keys generate`: a customer's RSA key pair for encrypted deliveries, as two PEM files.
//!
//! `private.pem` (PKCS#8, readable by its owner only) stays with the customer's receiver
//! (`hookline-receiver --private-key`); `public.pem` (SPKI) is what the customer uploads so that
//! Hookline encrypts its deliveries. Existing files are never replaced: overwriting a private key
//! whose public half is already registered would make every later delivery undecryptable.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use hookline_wire::PrivateKey;

/// File name of the private key in the output directory.
pub const PRIVATE_KEY_FILE: &str = "private.pem";
/// File name of the public key in the output directory.
pub const PUBLIC_KEY_FILE: &str = "public.pem";

/// Generates an RSA key pair of `bits` bits and writes it to `out_dir` (created if missing):
/// `private.pem` (PKCS#8, mode 0600 on Unix) and `public.pem` (SPKI). Returns their paths,
/// private first. Fails, writing nothing, if either file already exists or `bits` is outside
/// 2048..=8192; every error names the file or says what was wrong.
pub fn generate_key_pair(bits: usize, out_dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let private_path = out_dir.join(PRIVATE_KEY_FILE);
    let public_path = out_dir.join(PUBLIC_KEY_FILE);
    // Checked before the slow generation; `create_new` below closes the race with anyone
    // creating the files meanwhile. `symlink_metadata` also catches a dangling symlink.
    for path in [&private_path, &public_path] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(already_exists(path));
        }
    }

    let key = PrivateKey::generate(bits).map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    fs::create_dir_all(out_dir)
        .map_err(|error| io::Error::new(error.kind(), format!("cannot create {}: {error}", out_dir.display())))?;

    let private_pem = key.to_pkcs8_pem().into_bytes();
    let written = write_new_file(&private_path, &private_pem, 0o600);
    wipe(private_pem);
    written?;
    if let Err(error) = write_new_file(&public_path, key.public_key().to_spki_pem().as_bytes(), 0o644) {
        // A private key without its public half is useless and only a liability.
        let _ = fs::remove_file(&private_path);
        return Err(error);
    }
    Ok((private_path, public_path))
}

/// Creates `path` (failing if it exists) with `mode` from the start, so the private key is never
/// readable by others, not even briefly. The umask can only narrow the mode.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|error| match error.kind() {
        io::ErrorKind::AlreadyExists => already_exists(path),
        kind => io::Error::new(kind, format!("cannot create {}: {error}", path.display())),
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| io::Error::new(error.kind(), format!("cannot write {}: {error}", path.display())))
}

fn already_exists(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already exists; refusing to replace a key (its pair may be registered already): \
             move it away or choose another --out",
            path.display()
        ),
    )
}

/// Overwrites the private key's PEM before its memory is freed. (`zeroize` is not a dependency
/// of this crate; `black_box` keeps the compiler from dropping the writes as dead stores.)
fn wipe(mut secret: Vec<u8>) {
    secret.fill(0);
    std::hint::black_box(&secret);
}

#[cfg(test)]
mod tests {
    use hookline_wire::PublicKey;

    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("hookline-setup-keys-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn writes_a_matching_pair_creating_the_directory() {
        let temp = TempDir::new("pair");
        let out = temp.0.join("nested/keys");
        let (private_path, public_path) = generate_key_pair(2048, &out).expect("generate");
        assert_eq!((private_path.clone(), public_path.clone()), (out.join("private.pem"), out.join("public.pem")));

        let private_pem = fs::read_to_string(&private_path).expect("private.pem");
        let public_pem = fs::read_to_string(&public_path).expect("public.pem");
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8");
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "SPKI");
        let private = PrivateKey::from_pem(&private_pem).expect("readable private key");
        let public = PublicKey::from_pem(&public_pem).expect("readable public key");
        assert_eq!(private.public_key(), public, "the files are one pair");
        assert_eq!(public.bits(), 2048);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&private_path), 0o600);
            assert_eq!(mode(&public_path) & 0o600, 0o600, "the public key is at least owner-readable");
        }
    }

    #[test]
    fn never_replaces_existing_files() {
        let temp = TempDir::new("existing");
        let (private_path, public_path) = generate_key_pair(2048, &temp.0).expect("first pair");
        let original = fs::read(&private_path).expect("read");

        let error = generate_key_pair(2048, &temp.0).expect_err("second pair");
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert!(error.to_string().contains("private.pem already exists"), "{error}");
        assert_eq!(fs::read(&private_path).expect("read"), original, "untouched");

        // Only the public key present: still refused, and no private key is written.
        fs::remove_file(&private_path).expect("remove");
        let error = generate_key_pair(2048, &temp.0).expect_err("public.pem exists");
        assert!(error.to_string().contains("public.pem already exists"), "{error}");
        assert!(!private_path.exists());
        assert!(public_path.exists());
    }

    #[test]
    fn refuses_weak_sizes_and_writes_nothing() {
        let temp = TempDir::new("weak");
        let error = generate_key_pair(1024, &temp.0).expect_err("too small");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("1024-bit"), "{error}");
        assert!(!temp.0.exists(), "nothing created");
    }
}
