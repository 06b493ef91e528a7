//! The data directory of `cloudsec up`: private to its user, holding the
//! databases, the keystore, the development CA and the page-token key it
//! generates once.

use std::path::Path;

use cloudsec_runtime::Secret;

use crate::error::PlatformError;

/// Creates `dir` readable by its owner only, and makes an existing one
/// so: it holds databases, keys and the development CA.
pub fn private_dir(dir: &Path) -> Result<(), PlatformError> {
    let err = |source| PlatformError::DataDir {
        path: dir.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(err)?;
            tracing::info!(path = %dir.display(), "data directory made private (mode 700)");
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(err)?;
    Ok(())
}

/// Reads the page-token key kept in `dir`, creating a random one first.
pub(crate) fn page_token_key(dir: &Path) -> Result<Secret, PlatformError> {
    use std::io::Write;
    let path = dir.join("page-token.key");
    let err = |source| PlatformError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() >= 32 => return Ok(Secret::new(key.trim())),
        Ok(_) => {
            return Err(err(std::io::Error::other(
                "page token key is shorter than 32 characters",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(err)?;
    file.write_all(key.as_bytes()).map_err(err)?;
    Ok(Secret::new(key))
}
