//! Per-test scratch folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{HarnessError, Result};
use crate::tools::Tools;

/// A temporary folder under `/tmp` owned by the run-as user, removed when the last clone is dropped.
///
/// Nodes keep a clone, so the folder outlives every process started in it even if a test drops
/// things in an unexpected order. `/tmp` (not `$TMPDIR`) keeps unix socket paths well under the
/// ~100-byte limit.
#[derive(Clone)]
pub struct Scratch {
    inner: Arc<Inner>,
}

struct Inner {
    dir: tempfile::TempDir,
    tools: Tools,
}

impl Scratch {
    /// Locates the tools and creates the folder.
    pub fn new() -> Result<Self> {
        Self::with_tools(Tools::locate()?)
    }

    /// Creates the folder for already located tools.
    pub fn with_tools(tools: Tools) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pgdr-")
            .tempdir_in("/tmp")
            .map_err(|e| HarnessError::io("creating a scratch folder in /tmp", e))?;
        tools.run_as.chown(dir.path())?;
        Ok(Self {
            inner: Arc::new(Inner { dir, tools }),
        })
    }

    pub fn path(&self) -> &Path {
        self.inner.dir.path()
    }

    pub fn tools(&self) -> &Tools {
        &self.inner.tools
    }

    /// Creates `name` inside the scratch folder, owned by the run-as user. Fails if it exists, so
    /// two nodes can never share a folder.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.path().join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        self.inner.tools.run_as.chown(&dir)?;
        Ok(dir)
    }

    /// Writes a file owned by the run-as user with the given mode (e.g. 0o600 for secrets).
    pub fn write_file(&self, path: &Path, contents: &str, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        self.inner.tools.run_as.chown(path)
    }
}
