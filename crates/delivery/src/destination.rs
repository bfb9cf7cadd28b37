//! Where objects are published: any `object_store` backend, named by a URL.
//!
//! - `file:///path`: a folder. object_store writes each object to a temporary file
//!   (`<name>#<n>`) and renames it, so a reader never sees part of one under its name;
//!   sluice then syncs the file and its folders, so an object whose offsets are committed
//!   survives a machine crash too, and on start removes temporary files a kill left.
//! - `s3://bucket/prefix`: S3 or any S3-compatible store. Credentials and region come from
//!   the standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, web identity, instance
//!   metadata), the endpoint from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, and every
//!   object_store S3 option (`aws_endpoint`, `aws_virtual_hosted_style_request`, ...) from
//!   the stream's `destination_options`. An `http://` endpoint is allowed as given.
//! - `gs://` and `az://`/`abfs://`, when built with the `gcp` or `azure` feature.
//!
//! Publishing is a single PUT of the whole object, retried with backoff until it works: an
//! object store that is down delays delivery but never drops data.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::limits::{RETRY_BACKOFF_MS_FIRST, RETRY_BACKOFF_MS_MAX};

/// An opened destination.
#[derive(Debug, Clone)]
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    base: Path,
    /// The folder of a `file://` destination, to sync what was written.
    local_root: Option<PathBuf>,
    url: String,
}

impl Destination {
    /// Opens `url` with object_store `options`; `stream` names the stream in errors.
    pub fn open(
        stream: &str,
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Destination> {
        let failed = |source| Error::Destination { stream: stream.into(), url: url.into(), source };
        let parsed = url::Url::parse(url).map_err(|e| {
            failed(object_store::Error::Generic { store: "url", source: Box::new(e) })
        })?;
        if parsed.scheme() == "file" {
            let folder = parsed.to_file_path().map_err(|()| {
                failed(object_store::Error::Generic {
                    store: "url",
                    source: format!("{url} is not an absolute file path").into(),
                })
            })?;
            std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
                stream: stream.into(),
                what: format!("cannot create {}", folder.display()),
                source,
            })?;
            remove_staged_files(&folder);
            let store =
                object_store::local::LocalFileSystem::new_with_prefix(&folder).map_err(failed)?;
            return Ok(Destination {
                store: Arc::new(store),
                base: Path::default(),
                local_root: Some(folder),
                url: url.into(),
            });
        }
        let base = Path::from(parsed.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = if matches!(parsed.scheme(), "s3" | "s3a") {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            let endpoint = options
                .get("aws_endpoint")
                .or(options.get("endpoint"))
                .cloned()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            for (key, value) in options {
                let key = key.parse().map_err(failed)?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(failed)?)
        } else {
            let (store, _) =
                object_store::parse_url_opts(&parsed, options.iter()).map_err(failed)?;
            Arc::from(store)
        };
        Ok(Destination { store, base, local_root: None, url: url.into() })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store and the base path keys are under (for readers and tests).
    pub fn store(&self) -> (&Arc<dyn ObjectStore>, &Path) {
        (&self.store, &self.base)
    }

    /// The path of `key` in the store.
    pub fn path(&self, key: &str) -> Path {
        let mut path = self.base.clone();
        for part in key.split('/').filter(|part| !part.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// Publishes one object once: a PUT, then a sync for a folder.
    pub async fn publish_once(&self, key: &str, bytes: bytes::Bytes) -> std::io::Result<()> {
        let path = self.path(key);
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(std::io::Error::other)?;
        if let Some(root) = &self.local_root {
            let (root, file) = (root.clone(), root.join(path.as_ref()));
            tokio::task::spawn_blocking(move || sync_file_and_folders(&root, &file))
                .await
                .map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    /// Publishes one object, retrying with backoff until it works or `stop` turns true
    /// (then `false`: the object is not published and its offsets must not be committed).
    pub async fn publish(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        mut failed: impl FnMut(&std::io::Error, u32),
    ) -> bool {
        let mut backoff = Duration::from_millis(RETRY_BACKOFF_MS_FIRST);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.publish_once(key, bytes.clone()).await {
                Ok(()) => return true,
                Err(error) => failed(&error, attempt),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|stop| *stop) => return false,
            }
            backoff = (backoff * 2).min(Duration::from_millis(RETRY_BACKOFF_MS_MAX));
        }
    }
}

/// Removes what a killed process left of its uploads: object_store stages an object as
/// `<name>#<n>` next to its final name and renames it, so such a file is never a published
/// object, only a partial one that must not stay visible.
fn remove_staged_files(folder: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            remove_staged_files(&path);
            continue;
        }
        let name = entry.file_name();
        let staged = name
            .to_str()
            .and_then(|n| n.rsplit_once('#'))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if staged {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a partial upload"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a partial upload")
                }
            }
        }
    }
}

/// Syncs the file, then every folder from its own up to the destination's root: each new
/// folder's entry lives in its parent.
fn sync_file_and_folders(root: &std::path::Path, file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    let mut folder = file.parent();
    while let Some(current) = folder {
        std::fs::File::open(current)?.sync_all()?;
        if current == root {
            break;
        }
        folder = current.parent();
    }
    Ok(())
}
