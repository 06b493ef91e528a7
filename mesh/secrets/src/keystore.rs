//! The embedded default: a local encrypted keystore for `cloudsec up`.
//!
//! Two files in one directory (default `<data dir>/keystore`):
//! - `keystore.key`: 32 random bytes, created once with mode 0600; the
//!   store refuses a key file that others can read.
//! - `keystore.enc`: JSON `{format, version, nonce, ciphertext}` where the
//!   ciphertext is the AES-256-GCM encryption of every secret, as
//!   `{"<mount>/<path>": {"<field>": "<value>"}}`.
//!
//! Every write re-encrypts the whole store under a fresh nonce into a
//! temporary file that is then renamed over the old one, so a crash never
//! leaves half a store. One process owns a keystore; concurrent writers
//! from several processes are not supported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cloudsec_runtime::Secret;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, KeyBytes};
use crate::error::{Error, Result};
use crate::provider::SecretsProvider;
use crate::reference::SecretRef;

const KEY_FILE: &str = "keystore.key";
const DATA_FILE: &str = "keystore.enc";
const FORMAT: &str = "cloudsec-keystore";
const VERSION: u32 = 1;
// Binds the ciphertext to its purpose, so no other blob encrypted under
// the same key file could be passed off as a keystore.
const AAD: &[u8] = b"cloudsec-keystore-v1";

type Store = BTreeMap<String, BTreeMap<String, String>>;

/// The local encrypted keystore (see the module doc).
pub struct LocalKeystore {
    dir: PathBuf,
    key: KeyBytes,
    store: Mutex<Store>,
}

impl std::fmt::Debug for LocalKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeystore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    format: String,
    version: u32,
    nonce: String,
    ciphertext: String,
}

impl LocalKeystore {
    /// Opens the keystore in `dir`, creating the directory, the key and an
    /// empty store on first use.
    pub fn open(dir: &Path) -> Result<Self> {
        let err = |reason: String| Error::Keystore {
            path: dir.display().to_string(),
            reason,
        };
        create_private_dir(dir).map_err(|e| err(format!("cannot create the directory: {e}")))?;
        let key_path = dir.join(KEY_FILE);
        let data_path = dir.join(DATA_FILE);
        private_dir_mode(dir)
            .map_err(|e| err(format!("cannot make the directory private: {e}")))?;
        refuse_shared(&data_path).map_err(&err)?;
        let key = if key_path.exists() {
            read_key(&key_path)?
        } else if data_path.exists() {
            return Err(err(format!(
                "{DATA_FILE} exists but its key {KEY_FILE} is missing; restore the key file or \
                 remove {DATA_FILE} to start an empty keystore"
            )));
        } else {
            let key = aead::random_key()?;
            write_private(&key_path, key.as_ref(), true)
                .map_err(|e| err(format!("cannot create {KEY_FILE}: {e}")))?;
            tracing::info!(path = %key_path.display(), "created the local keystore key");
            key
        };
        let store = if data_path.exists() {
            decrypt_store(&data_path, &key)?
        } else {
            Store::new()
        };
        Ok(Self {
            dir: dir.to_owned(),
            key,
            store: Mutex::new(store),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fields at `<mount>/<path>`, if any.
    pub fn fields(&self, location: &str) -> Option<BTreeMap<String, Secret>> {
        self.lock().get(location).map(|fields| {
            fields
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect()
        })
    }

    /// Sets one field and persists the store.
    pub fn put(&self, reference: &SecretRef, value: &Secret) -> Result<()> {
        self.update(|store| {
            store
                .entry(reference.location())
                .or_default()
                .insert(reference.field.clone(), value.expose().to_owned());
        })
    }

    /// Sets a field unless it exists, and returns the stored value: how
    /// `cloudsec up` generates a secret on first start and keeps it after.
    pub fn get_or_insert_with(
        &self,
        reference: &SecretRef,
        make: impl FnOnce() -> Secret,
    ) -> Result<Secret> {
        if let Some(v) = self.lookup(reference) {
            return Ok(v);
        }
        let value = make();
        self.put(reference, &value)?;
        Ok(value)
    }

    /// Removes a whole secret (every field at its location).
    pub fn remove(&self, location: &str) -> Result<bool> {
        let mut removed = false;
        self.update(|store| removed = store.remove(location).is_some())?;
        Ok(removed)
    }

    fn lookup(&self, reference: &SecretRef) -> Option<Secret> {
        self.lock()
            .get(&reference.location())
            .and_then(|f| f.get(&reference.field))
            .map(|v| Secret::new(v.clone()))
    }

    /// Applies `change` and writes the store; on a write failure the
    /// in-memory store is left as it was.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Store)) -> Result<()> {
        let mut store = self.lock();
        let mut next = store.clone();
        change(&mut next);
        self.persist(&next)?;
        *store = next;
        Ok(())
    }

    fn persist(&self, store: &Store) -> Result<()> {
        let err = |reason: String| Error::Keystore {
            path: self.dir.display().to_string(),
            reason,
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(store).map_err(|e| err(format!("cannot encode: {e}")))?,
        );
        let (nonce, ciphertext) = aead::seal(self.key.as_ref(), AAD, &plain)?;
        let sealed = Sealed {
            format: FORMAT.into(),
            version: VERSION,
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        };
        let bytes =
            serde_json::to_vec_pretty(&sealed).map_err(|e| err(format!("cannot encode: {e}")))?;
        let tmp = self.dir.join(format!("{DATA_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &bytes, true)
            .map_err(|e| err(format!("cannot write {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, self.dir.join(DATA_FILE))
            .map_err(|e| err(format!("cannot replace {DATA_FILE}: {e}")))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl SecretsProvider for LocalKeystore {
    async fn get(&self, reference: &SecretRef) -> Result<Secret> {
        self.lookup(reference).ok_or_else(|| Error::NotFound {
            reference: reference.to_string(),
        })
    }
}

fn read_key(path: &Path) -> Result<KeyBytes> {
    let err = |reason: String| Error::Keystore {
        path: path.display().to_string(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| err(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "the key file is accessible by other users (mode {:o}); run `chmod 600` on it",
                mode & 0o777
            )));
        }
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
    let key: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| err(format!("the key file must hold exactly {KEY_LEN} bytes")))?;
    Ok(Zeroizing::new(key))
}

/// Takes group and other access off the keystore directory: its files are
/// private anyway, and a listing should not be either.
fn private_dir_mode(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    let _ = dir;
    Ok(())
}

/// Refuses a keystore file that other users may read: the keystore seals
/// every local secret, so it is not used until fixed.
fn refuse_shared(path: &Path) -> std::result::Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is accessible by group or others (mode {:o}); the keystore is not used \
                 until it is private: run `chmod -R go-rwx {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    let _ = path;
    Ok(())
}

fn decrypt_store(path: &Path, key: &KeyBytes) -> Result<Store> {
    let err = |reason: String| Error::Keystore {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let sealed: Sealed =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("not a keystore file: {e}")))?;
    if sealed.format != FORMAT || sealed.version != VERSION {
        return Err(err(format!(
            "unsupported keystore format {} v{}",
            sealed.format, sealed.version
        )));
    }
    let nonce = B64
        .decode(&sealed.nonce)
        .map_err(|_| err("the nonce is not base64".into()))?;
    let ciphertext = B64
        .decode(&sealed.ciphertext)
        .map_err(|_| err("the ciphertext is not base64".into()))?;
    let plain = aead::open(key.as_ref(), &nonce, AAD, &ciphertext).map_err(|_| {
        err("cannot decrypt: the file was modified or belongs to another key file".into())
    })?;
    serde_json::from_slice(&plain)
        .map_err(|e| err(format!("decrypted content is not a store: {e}")))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes a file readable by its owner only, synced to disk.
pub(crate) fn write_private(path: &Path, contents: &[u8], create_new: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap()
    }

    #[tokio::test]
    async fn stores_and_reloads_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let ks = LocalKeystore::open(dir.path()).unwrap();
        ks.put(
            &r("vault:secret/documents#page_token_key"),
            &Secret::new("p4ge-t0ken-key"),
        )
        .unwrap();
        ks.put(&r("vault:secret/documents#other"), &Secret::new("x"))
            .unwrap();
        drop(ks);

        let raw = std::fs::read_to_string(dir.path().join(DATA_FILE)).unwrap();
        assert!(!raw.contains("p4ge-t0ken-key"), "stored in clear: {raw}");
        assert!(!raw.contains("page_token_key"), "field names leak: {raw}");

        let ks = LocalKeystore::open(dir.path()).unwrap();
        let v = ks
            .get(&r("vault:secret/documents#page_token_key"))
            .await
            .unwrap();
        assert_eq!(v.expose(), "p4ge-t0ken-key");
        assert!(!format!("{ks:?}").contains("p4ge"));
        let err = ks.get(&r("vault:secret/documents#nope")).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret `vault:secret/documents#nope` not found"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_keystore_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("keystore");
        LocalKeystore::open(&store)
            .unwrap()
            .put(&r("vault:secret/app#k"), &Secret::new("v"))
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join(DATA_FILE)), 0o600);
        // A directory others could list is made private again.
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        LocalKeystore::open(&store).unwrap();
        assert_eq!(mode(&store), 0o700);
        // A store file others could read is refused until fixed.
        std::fs::set_permissions(
            store.join(DATA_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let error = LocalKeystore::open(&store).unwrap_err().to_string();
        assert!(error.contains("chmod -R go-rwx"), "{error}");
        std::fs::set_permissions(
            store.join(DATA_FILE),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(LocalKeystore::open(&store).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        LocalKeystore::open(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKeystore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn tampered_or_orphaned_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ks = LocalKeystore::open(dir.path()).unwrap();
        ks.put(&r("vault:a/b#c"), &Secret::new("d")).unwrap();
        drop(ks);
        let data = dir.path().join(DATA_FILE);
        let mut sealed: Sealed = serde_json::from_slice(&std::fs::read(&data).unwrap()).unwrap();
        let mut ct = B64.decode(&sealed.ciphertext).unwrap();
        ct[3] ^= 0x40;
        sealed.ciphertext = B64.encode(ct);
        std::fs::write(&data, serde_json::to_vec(&sealed).unwrap()).unwrap();
        let err = LocalKeystore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot decrypt"), "{err}");

        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let err = LocalKeystore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("key") && err.contains("missing"), "{err}");
    }

    #[test]
    fn generates_once_and_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let ks = LocalKeystore::open(dir.path()).unwrap();
        let a = ks
            .get_or_insert_with(&r("vault:secret/x#k"), || Secret::new("first"))
            .unwrap();
        let b = ks
            .get_or_insert_with(&r("vault:secret/x#k"), || Secret::new("second"))
            .unwrap();
        assert_eq!((a.expose(), b.expose()), ("first", "first"));
        assert!(ks.remove("secret/x").unwrap());
        assert!(ks.fields("secret/x").is_none());
    }
}
