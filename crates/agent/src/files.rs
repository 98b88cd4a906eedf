//! The device's data directory: its key, its id, its setup code, its pairing and its core's
//! durable state. Secrets are written with mode 0600 and every file is replaced atomically
//! (written beside, synced, renamed), so a power cut leaves the old or the new copy, never half.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use doorward_proto::pairing::{DeviceKind, SetupCode};
use doorward_proto::{Id, KeyPair, PubKey};
use serde::{Deserialize, Serialize};

/// File holding the device key's secret seed (hex), mode 0600.
pub const KEY_FILE: &str = "device.key";
/// File holding the device id.
pub const ID_FILE: &str = "device.id";
/// File holding the setup code printed on the device until it is paired, mode 0600.
pub const SETUP_CODE_FILE: &str = "setup-code";
/// File holding the pairing (home, its keys, the paired peer device), mode 0600.
pub const PAIRING_FILE: &str = "pairing.json";
/// File holding the core's durable state (the lock's spent grants, the camera's sequence
/// reservation).
pub const STATE_FILE: &str = "state.cbor";
/// Largest file the agent reads from its data directory, in bytes.
pub const MAX_DATA_FILE_BYTES: u64 = 1024 * 1024;

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file holds something else than expected.
    #[error(
        "{path}: {what}; remove the file to start over (the device must then be paired again)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A secret file is readable by others.
    #[error("{path} has mode {mode:o}: secrets must be 0600 (chmod 600 it)")]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file beside it, synced,
/// then renamed over it, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads a file of at most [`MAX_DATA_FILE_BYTES`], or `None` if it does not exist.
pub fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, DataError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    if meta.len() > MAX_DATA_FILE_BYTES {
        return Err(corrupt(
            path,
            format!("larger than {MAX_DATA_FILE_BYTES} bytes"),
        ));
    }
    std::fs::read(path).map(Some).map_err(io(path))
}

fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, DataError> {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DataError::Mode {
                path: path.to_owned(),
                mode,
            });
        }
    }
    read_limited(path)
}

/// The pairing a device keeps: who its home is, the keys it trusts, and its peer device (a
/// lock's camera, a camera's lock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingFile {
    /// Lock or camera.
    pub kind: String,
    /// This device.
    pub device: String,
    /// The home it belongs to.
    pub home: String,
    /// The home root key (hex).
    pub root: String,
    /// The server key (hex).
    pub server: String,
    /// The peer device: for a lock its camera, for a camera its lock.
    pub peer: String,
    /// The peer device's key (hex).
    pub peer_key: String,
}

/// A pairing read back and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paired {
    /// This device's kind.
    pub kind: DeviceKind,
    /// This device.
    pub device: Id,
    /// Its home.
    pub home: Id,
    /// The home root key.
    pub root: PubKey,
    /// The server key.
    pub server: PubKey,
    /// The peer device (a lock's camera, a camera's lock).
    pub peer: Id,
    /// The peer's key.
    pub peer_key: PubKey,
}

impl Paired {
    fn to_file(&self) -> PairingFile {
        PairingFile {
            kind: self.kind.as_str().into(),
            device: self.device.to_string(),
            home: self.home.to_string(),
            root: self.root.to_hex(),
            server: self.server.to_hex(),
            peer: self.peer.to_string(),
            peer_key: self.peer_key.to_hex(),
        }
    }

    fn from_file(path: &Path, f: PairingFile) -> Result<Self, DataError> {
        let key = |s: &str, what: &str| {
            PubKey::from_hex(s).ok_or_else(|| corrupt(path, format!("{what} is not a hex key")))
        };
        let id = |s: &str, what: &str| {
            Id::new(s).map_err(|e| corrupt(path, format!("{what} is not a valid id: {e}")))
        };
        Ok(Paired {
            kind: DeviceKind::from_name(&f.kind)
                .ok_or_else(|| corrupt(path, "kind is neither lock nor camera"))?,
            device: id(&f.device, "device")?,
            home: id(&f.home, "home")?,
            root: key(&f.root, "root")?,
            server: key(&f.server, "server")?,
            peer: id(&f.peer, "peer")?,
            peer_key: key(&f.peer_key, "peer_key")?,
        })
    }
}

/// A device's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    dir: PathBuf,
}

impl DataDir {
    /// Opens (creating it, mode 0700) the directory.
    pub fn open(dir: &Path) -> Result<DataDir, DataError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        Ok(DataDir {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The device key, generated on first use.
    pub fn key(&self) -> Result<KeyPair, DataError> {
        let path = self.file(KEY_FILE);
        if let Some(bytes) = read_secret(&path)? {
            let text = String::from_utf8_lossy(&bytes);
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|_| corrupt(&path, "not a 64-character hex seed"))?;
            return Ok(KeyPair::from_seed(&seed));
        }
        let key = KeyPair::generate(&mut rand_core::OsRng);
        write_atomic(
            &path,
            format!("{}\n", hex::encode(&key.seed()[..])).as_bytes(),
        )?;
        Ok(key)
    }

    /// The device id: `given` if set (it must match a stored one), else the stored one, else a
    /// new `<prefix>-<8 hex>`.
    pub fn device_id(&self, given: Option<&Id>, prefix: &str) -> Result<Id, DataError> {
        let path = self.file(ID_FILE);
        let stored = match read_limited(&path)? {
            Some(b) => Some(
                Id::new(String::from_utf8_lossy(&b).trim())
                    .map_err(|e| corrupt(&path, format!("not a valid id: {e}")))?,
            ),
            None => None,
        };
        match (given, stored) {
            (Some(g), Some(s)) if g != &s => Err(corrupt(
                &path,
                format!("this data directory belongs to device {s}, not {g}"),
            )),
            (_, Some(s)) => Ok(s),
            (Some(g), None) => {
                write_atomic(&path, format!("{g}\n").as_bytes())?;
                Ok(g.clone())
            }
            (None, None) => {
                let mut r = [0u8; 4];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
                let id = Id::new(format!("{prefix}-{}", hex::encode(r)))
                    .expect("a prefix and hex digits form a valid id");
                write_atomic(&path, format!("{id}\n").as_bytes())?;
                Ok(id)
            }
        }
    }

    /// The setup code printed on the device, generated on first use and kept until paired.
    pub fn setup_code(&self) -> Result<SetupCode, DataError> {
        let path = self.file(SETUP_CODE_FILE);
        if let Some(b) = read_secret(&path)? {
            return SetupCode::parse(String::from_utf8_lossy(&b).trim())
                .map_err(|e| corrupt(&path, format!("not a setup code: {e}")));
        }
        let code = SetupCode::generate(&mut rand_core::OsRng);
        write_atomic(&path, format!("{}\n", code.digits()).as_bytes())?;
        Ok(code)
    }

    /// The stored pairing, if the device was paired.
    pub fn pairing(&self) -> Result<Option<Paired>, DataError> {
        let path = self.file(PAIRING_FILE);
        let Some(bytes) = read_secret(&path)? else {
            return Ok(None);
        };
        let f: PairingFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e.to_string()))?;
        Paired::from_file(&path, f).map(Some)
    }

    /// Stores a pairing (mode 0600) and forgets the setup code.
    pub fn store_pairing(&self, p: &Paired) -> Result<(), DataError> {
        let json = serde_json::to_vec_pretty(&p.to_file()).expect("a pairing serialises");
        write_atomic(&self.file(PAIRING_FILE), &json)?;
        let _ = std::fs::remove_file(self.file(SETUP_CODE_FILE));
        Ok(())
    }

    /// The core's durable state bytes, if any.
    pub fn state(&self) -> Result<Option<Vec<u8>>, DataError> {
        read_limited(&self.file(STATE_FILE))
    }

    /// Replaces the core's durable state.
    pub fn store_state(&self, bytes: &[u8]) -> Result<(), DataError> {
        write_atomic(&self.file(STATE_FILE), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_code_and_pairing_survive_a_reopen_with_mode_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir::open(tmp.path()).unwrap();
        let k = d.key().unwrap();
        let id = d.device_id(None, "lock").unwrap();
        let code = d.setup_code().unwrap();
        let d2 = DataDir::open(tmp.path()).unwrap();
        assert_eq!(d2.key().unwrap().public(), k.public());
        assert_eq!(d2.device_id(None, "lock").unwrap(), id);
        assert_eq!(d2.setup_code().unwrap(), code);
        assert!(d2
            .device_id(Some(&Id::new("other").unwrap()), "lock")
            .is_err());
        let mode = std::fs::metadata(d.file(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let p = Paired {
            kind: DeviceKind::Lock,
            device: id.clone(),
            home: Id::new("home-1").unwrap(),
            root: KeyPair::from_seed(&[1; 32]).public(),
            server: KeyPair::from_seed(&[2; 32]).public(),
            peer: Id::new("cam-1").unwrap(),
            peer_key: KeyPair::from_seed(&[5; 32]).public(),
        };
        d.store_pairing(&p).unwrap();
        assert_eq!(d2.pairing().unwrap(), Some(p));
        assert!(
            !d.file(SETUP_CODE_FILE).exists(),
            "the code is forgotten once paired"
        );
        let mode = std::fs::metadata(d.file(PAIRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_secret_readable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir::open(tmp.path()).unwrap();
        d.key().unwrap();
        std::fs::set_permissions(d.file(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(d.key(), Err(DataError::Mode { .. })));
    }
}
