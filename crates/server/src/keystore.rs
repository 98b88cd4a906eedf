//! The server's secrets on disk: its own signing key, each home's issuing key and each home's
//! event-stream token, under `<data>/keys/`, one file each, mode 0600, generated from the OS
//! RNG the first time they are needed and reused after a restart.
//!
//! Layout:
//! - `keys/server.key`: the server key's 32-byte seed, hex;
//! - `keys/homes/<home>/issuer.key`: the home's issuing key seed, hex;
//! - `keys/homes/<home>/events.token`: the bearer token of the home's event stream, hex;
//! - `keys/homes/<home>/footage.key`: the key the home's recorded footage is sealed under.
//!
//! A file readable or writable by anyone but its owner is refused (the server does not
//! start), with the `chmod` that fixes it: a key another user could read is a key to assume
//! leaked.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use doorward_proto::{Id, KeyPair};
use rand_core::{OsRng, RngCore};

/// Length of an event-stream bearer token, in random bytes (hex on disk and on the wire).
pub const TOKEN_BYTES: usize = 32;
/// Largest key or token file read, in bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 256;

/// Why the keystore cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A secret file is open to other users.
    #[error(
        "{path} has mode {mode:o}: a secret must be readable by its owner only; \
         fix it with `chmod 600 {path}` (and check who may have read it)"
    )]
    Mode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file does not hold what it should.
    #[error("{0} is not a Doorward key or token file (expected {1} hex characters)")]
    Corrupt(String, usize),
    /// Filesystem trouble.
    #[error("keystore {0}: {1}")]
    Io(String, std::io::Error),
}

/// The key files under one data directory.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    /// The keystore of `data_dir` (created with mode 0700 when missing).
    pub fn open(data_dir: &Path) -> Result<Keystore, KeystoreError> {
        let dir = data_dir.join("keys");
        create_dir(&dir)?;
        Ok(Keystore { dir })
    }

    /// The directory holding the key files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's signing key, generated on first use.
    pub fn server_key(&self) -> Result<(KeyPair, bool), KeystoreError> {
        let (seed, created) = self.secret(&self.dir.join("server.key"))?;
        Ok((KeyPair::from_seed(&seed), created))
    }

    /// A home's issuing key, generated on first use.
    pub fn issuer_key(&self, home: &Id) -> Result<KeyPair, KeystoreError> {
        let dir = self.home_dir(home)?;
        Ok(KeyPair::from_seed(&self.secret(&dir.join("issuer.key"))?.0))
    }

    /// A home's event-stream bearer token (hex), generated on first use; `true` when it was
    /// generated now.
    pub fn events_token(&self, home: &Id) -> Result<(String, bool), KeystoreError> {
        let dir = self.home_dir(home)?;
        let (t, created) = self.secret(&dir.join("events.token"))?;
        Ok((hex::encode(t), created))
    }

    /// The event-stream token of a home if one was generated, without creating one.
    pub fn existing_events_token(&self, home: &Id) -> Result<Option<String>, KeystoreError> {
        let path = self
            .dir
            .join("homes")
            .join(home.as_str())
            .join("events.token");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(hex::encode(read_secret(&path)?)))
    }

    /// A home's footage key: recorded footage of the home is sealed under it
    /// ([`crate::footage`]). Generated on first use.
    pub fn footage_key(&self, home: &Id) -> Result<[u8; 32], KeystoreError> {
        let dir = self.home_dir(home)?;
        Ok(self.secret(&dir.join("footage.key"))?.0)
    }

    /// The key that wraps device session keys and stream state in the store (generated on
    /// first use).
    pub fn state_wrap_key(&self) -> Result<[u8; 32], KeystoreError> {
        Ok(self.secret(&self.dir.join("state-wrap.key"))?.0)
    }

    fn home_dir(&self, home: &Id) -> Result<PathBuf, KeystoreError> {
        // An Id is `[A-Za-z0-9._:-]{1,64}`; "." and ".." are the only names that would leave
        // the directory, and no home may take them.
        if home.as_str() == "." || home.as_str() == ".." {
            return Err(KeystoreError::Corrupt(home.to_string(), 0));
        }
        let homes = self.dir.join("homes");
        create_dir(&homes)?;
        let dir = homes.join(home.as_str());
        create_dir(&dir)?;
        Ok(dir)
    }

    fn secret(&self, path: &Path) -> Result<([u8; 32], bool), KeystoreError> {
        if path.exists() {
            return Ok((read_secret(path)?, false));
        }
        let mut seed = [0u8; TOKEN_BYTES];
        OsRng.fill_bytes(&mut seed);
        let io = |e| KeystoreError::Io(path.display().to_string(), e);
        // Written whole under a private name, then linked into place: two threads creating
        // the same key at once both end up with the one that was linked first, and nobody
        // ever reads a half-written file.
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".{}.tmp", hex::encode(&seed[..8])));
        let tmp = PathBuf::from(tmp_name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        writeln!(f, "{}", hex::encode(seed)).map_err(io)?;
        f.sync_all().map_err(io)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok((seed, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((read_secret(path)?, false))
            }
            Err(e) => Err(io(e)),
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), KeystoreError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeystoreError::Io(dir.display().to_string(), e))?;
    }
    Ok(())
}

/// Reads a hex secret, refusing a file open to group or others.
fn read_secret(path: &Path) -> Result<[u8; 32], KeystoreError> {
    let name = path.display().to_string();
    let meta = fs::metadata(path).map_err(|e| KeystoreError::Io(name.clone(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeystoreError::Mode { path: name, mode });
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(KeystoreError::Corrupt(name, 2 * TOKEN_BYTES));
    }
    let text = fs::read_to_string(path).map_err(|e| KeystoreError::Io(name.clone(), e))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| KeystoreError::Corrupt(name, 2 * TOKEN_BYTES))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::open(tmp.path()).unwrap();
        let (k1, created) = ks.server_key().unwrap();
        assert!(created);
        let ks = Keystore::open(tmp.path()).unwrap();
        let (k2, created) = ks.server_key().unwrap();
        assert!(!created);
        assert_eq!(k1.public(), k2.public());
        let home = Id::new("home-1").unwrap();
        let i1 = ks.issuer_key(&home).unwrap();
        assert_eq!(i1.public(), ks.issuer_key(&home).unwrap().public());
        assert_ne!(i1.public(), k1.public());
        let (t1, new) = ks.events_token(&home).unwrap();
        assert!(new);
        assert_eq!(ks.events_token(&home).unwrap(), (t1.clone(), false));
        assert_eq!(ks.existing_events_token(&home).unwrap(), Some(t1));
        let mode = fs::metadata(tmp.path().join("keys/server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_file_open_to_others_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::open(tmp.path()).unwrap();
        ks.server_key().unwrap();
        let path = tmp.path().join("keys/server.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ks.server_key().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KeystoreError::Mode { mode: 0o644, .. }));
        assert!(msg.contains("chmod 600"), "{msg}");
    }

    #[test]
    fn a_corrupt_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::open(tmp.path()).unwrap();
        let path = tmp.path().join("keys/server.key");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"not hex\n")
            .unwrap();
        assert!(matches!(
            ks.server_key(),
            Err(KeystoreError::Corrupt(_, 64))
        ));
    }
}
