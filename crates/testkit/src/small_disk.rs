//! A small file system of its own for a test: a `tmpfs` of a chosen size, mounted on a
//! temporary folder, so a broker's data folder can run out of space for real (ENOSPC from
//! the kernel, not a mock). Mounting needs root (CAP_SYS_ADMIN), as the test command has:
//! it installs Debian packages.

use std::io;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A mounted `tmpfs`; unmounted on drop.
pub struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// Mounts a `tmpfs` of `bytes` on a fresh temporary folder.
    pub fn mount(bytes: u64) -> io::Result<SmallDisk> {
        let dir = tempfile::Builder::new().prefix("sluice-small-disk-").tempdir()?;
        let size = format!("size={bytes}");
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(dir.path()))
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("{error} (a full-disk test mounts a small tmpfs: run it as root)"),
                )
            })?;
        Ok(SmallDisk { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` (in the mount) until the disk has no byte left; returns its size.
    /// Removing it makes the room again.
    pub fn fill(&self, name: &str) -> io::Result<u64> {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join(name))?;
        let chunk = vec![0xA5u8; 4096];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => return Ok(written),
                Ok(n) => written += n as u64,
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
                Err(error) => return Err(error),
            }
        }
    }

    /// Changes the size to `bytes` (not below what is used): more room, as when an
    /// operator frees space.
    pub fn resize(&self, bytes: u64) -> io::Result<()> {
        let options = format!("remount,size={bytes}");
        run(Command::new("mount").args(["-o", &options]).arg(self.dir.path()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a broker that still has files open there must not keep the mount alive.
        let _ = run(Command::new("umount").arg("-l").arg(self.dir.path()));
    }
}

fn run(command: &mut Command) -> io::Result<()> {
    let output = command.output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
