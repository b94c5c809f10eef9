//! A new device started from the server's snapshot (`GET /v1/snapshot`; spec/sync-protocol.md,
//! "Snapshots"): the file is downloaded beside its target, checked (a snapshot of this very
//! server, its triggers replaced by Syncline's own), and only then moved into place.

use super::client::SyncClient;
use super::{network, SyncOptions, SNAPSHOT_CONTENT_TYPE};
use crate::error::{Error, ErrorKind, Result};
use crate::Progress;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Removes the partial download (a no-op once it was moved into place).
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Download the snapshot of the server at `url` to `path` (a new file) for a new device,
/// calling `progress(bytes, total bytes)` as it arrives (total 0 if the server did not say).
/// Open `path` with [`SyncEngine::open`](crate::SyncEngine::open) afterwards and sync: the
/// first pass carries only what changed since the snapshot. Returns the file's size.
///
/// `InvalidArgument` if `path` exists; `InvalidBundle` if the server's file is not a snapshot
/// of that server; the server's refusal (`Auth`, `Network` for a server without snapshots).
/// Nothing is left at `path` after an error.
pub fn clone_snapshot(url: &str, token: Option<&str>, path: &Path, progress: Progress<'_>) -> Result<u64> {
    if path.exists() {
        return Err(Error::invalid_argument(format!("{} already exists; a snapshot is downloaded to a new file", path.display())));
    }
    let client = SyncClient::new(url, token, SyncOptions { timeout: std::time::Duration::from_secs(3600), ..Default::default() })?;
    let partial = Partial(path.with_extension(format!("download{}", std::process::id())));
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("cannot write {}: {e}", partial.0.display()));
    let size = client.runtime.block_on(async {
        let server = client.server_site(&mut Default::default()).await?;
        let mut response = client.get("/v1/snapshot").await?;
        let kind = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if kind != SNAPSHOT_CONTENT_TYPE {
            return Err(network(format!("the server answered {kind:?} instead of a snapshot")));
        }
        let total = response.content_length().unwrap_or(0);
        let mut file = std::io::BufWriter::new(std::fs::File::create_new(&partial.0).map_err(io)?);
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            file.write_all(&chunk).map_err(io)?;
            size += chunk.len() as u64;
            progress(size, total);
        }
        if total != 0 && size != total {
            return Err(network(format!("the snapshot was cut short: {size} of {total} bytes")));
        }
        file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        Ok::<_, Error>((size, server))
    });
    let (size, server) = size?;
    crate::snapshot::adopt_download(&partial.0, &server)?;
    std::fs::rename(&partial.0, path).map_err(|e| Error::new(ErrorKind::Io, format!("cannot write {}: {e}", path.display())))?;
    Ok(size)
}
