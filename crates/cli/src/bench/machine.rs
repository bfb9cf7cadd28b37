//! The machine a benchmark ran on, read from `/proc`: results mean little without it.
use std::path::Path;

use serde::Serialize;

/// What the report says about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// Memory in all, bytes.
    pub memory_bytes: u64,
    /// Filesystem type of the data folder, from `/proc/self/mounts`.
    pub filesystem: String,
    /// The data folder.
    pub data_dir: String,
}

/// Describes this machine and the filesystem holding `data_dir`. Anything `/proc` does not
/// answer reads as "unknown": the description must never fail a benchmark.
pub fn describe(data_dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    let canonical = data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf());
    Machine {
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model: cpu_model.unwrap_or_else(|| "unknown".into()),
        kernel: kernel.map(|k| k.trim().to_string()).unwrap_or_else(|| "unknown".into()),
        memory_bytes: memory_kib.unwrap_or(0) * 1024,
        filesystem: filesystem_of(&canonical).unwrap_or_else(|| "unknown".into()),
        data_dir: canonical.display().to_string(),
    }
}

/// `fstype (device)` of the mount with the longest mount point holding `path`.
fn filesystem_of(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            // Mount points escape spaces as \040; such a point simply never matches.
            path.starts_with(point).then(|| (point.len(), format!("{fstype} ({device})")))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, filesystem)| filesystem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_root_filesystem() {
        assert!(filesystem_of(Path::new("/")).is_some());
    }
}
