//! The web console (`web/dist`, a single-page application) served from the
//! REST listener: its files at `/` with cache headers, `index.html` for
//! every other page (the application routes in the browser), and the
//! console's security headers on each answer.
//!
//! The files are read once at start into memory: only those paths exist,
//! so no request path ever reaches the file system (no traversal to
//! guard), and a console of a few hundred kilobytes costs nothing to hold.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use crate::config::ConfigError;

/// The security headers of every console answer; the same set the S3 and
/// CloudFront deployment sets (`web/security-headers.json`). No inline
/// script or style is allowed, and the page cannot be framed.
pub(crate) const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
];

/// The most the console may weigh in memory.
const MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
struct Asset {
    body: Bytes,
    content_type: &'static str,
    cache_control: &'static str,
}

/// The loaded console.
#[derive(Debug)]
pub(crate) struct Console {
    files: HashMap<String, Asset>,
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Vite names built assets after their content: they never change, so a
/// browser may keep them a year. Everything else is checked again.
fn cache_control(web_path: &str) -> &'static str {
    if web_path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else if web_path == "/index.html" {
        "no-cache"
    } else {
        "public, max-age=3600"
    }
}

impl Console {
    /// Reads every file under `dir`, which must hold an `index.html`.
    pub(crate) fn load(dir: &Path) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError {
            key: "gateway.console_dir".into(),
            reason,
        };
        let mut files = HashMap::new();
        let mut total = 0u64;
        let mut pending: Vec<PathBuf> = vec![dir.to_owned()];
        while let Some(next) = pending.pop() {
            let entries = std::fs::read_dir(&next)
                .map_err(|e| bad(format!("cannot read {}: {e}", next.display())))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad(e.to_string()))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| bad(e.to_string()))?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !kind.is_file() {
                    // Links could point anywhere: only plain files count.
                    continue;
                }
                let body = std::fs::read(&path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                total += body.len() as u64;
                if total > MAX_BYTES {
                    return Err(bad(format!("larger than {MAX_BYTES} bytes")));
                }
                let relative = path.strip_prefix(dir).map_err(|e| bad(e.to_string()))?;
                let web_path = format!(
                    "/{}",
                    relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/")
                );
                files.insert(
                    web_path.clone(),
                    Asset {
                        body: Bytes::from(body),
                        content_type: content_type(&path),
                        cache_control: cache_control(&web_path),
                    },
                );
            }
        }
        if !files.contains_key("/index.html") {
            return Err(bad(format!("{} has no index.html", dir.display())));
        }
        Ok(Self { files })
    }

    /// The answer to `method path` when the console owns it: GET and HEAD
    /// of anything but the API's own paths.
    pub(crate) fn serve(&self, method: &Method, path: &str) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        if path.starts_with("/v1/") || path.starts_with("/.well-known/") || path == "/openapi.json"
        {
            return None;
        }
        let asset = match self.files.get(path) {
            Some(asset) => asset,
            // A missing built asset is a 404, not the page: a stale page
            // must not load HTML as its script.
            None if path.starts_with("/assets/") => return None,
            // Any other path is a page of the application.
            None => self.files.get("/index.html")?,
        };
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            asset.body.clone()
        };
        let mut response = (StatusCode::OK, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(asset.cache_control),
        );
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> (tempfile::TempDir, Console) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>app</html>").unwrap();
        std::fs::write(dir.path().join("assets/index-abc.js"), "js").unwrap();
        let console = Console::load(dir.path()).unwrap();
        (dir, console)
    }

    #[test]
    fn files_pages_and_headers() {
        let (_dir, console) = console();
        let r = console.serve(&Method::GET, "/assets/index-abc.js").unwrap();
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        // A page of the application is index.html, never cached.
        let r = console.serve(&Method::GET, "/documents/123").unwrap();
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        // The API, a missing asset and other methods are not the console's.
        assert!(console.serve(&Method::GET, "/v1/documents").is_none());
        assert!(console.serve(&Method::GET, "/openapi.json").is_none());
        assert!(console.serve(&Method::GET, "/assets/gone.js").is_none());
        assert!(console.serve(&Method::POST, "/").is_none());
        // Traversal has nothing to reach: only loaded paths exist.
        let r = console.serve(&Method::GET, "/../../etc/passwd").unwrap();
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[test]
    fn a_directory_without_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = Console::load(dir.path()).unwrap_err();
        assert_eq!(error.key, "gateway.console_dir");
    }
}
