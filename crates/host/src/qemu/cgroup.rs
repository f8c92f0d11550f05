//! Each VM process in its own cgroup, capped at its vCPUs plus one core and
//! its memory plus the VMM's overhead, where the host lets nubo create
//! cgroups (v2 or v1).
//!
//! The extra core is the VMM's own: its threads (device emulation, the block
//! I/O thread pool, the main loop) work beside the vCPU threads, which can
//! never use more than a core each anyway. Capped at the vCPUs alone, a busy
//! guest starves its own disk: 4 writers in nubo-micro under TCG wrote about
//! 1000 MiB/s capped at 1 core and 1500 MiB/s with room beside it.

use std::fs;
use std::path::PathBuf;

/// Memory a VMM may use beyond its guest's RAM before the cgroup stops it.
const VMM_OVERHEAD_MIB: u64 = 256;
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
pub enum Cgroups {
    V2(PathBuf),
    V1 { memory: PathBuf, cpu: PathBuf },
    Unavailable(String),
}

impl Cgroups {
    /// Finds a cgroup hierarchy nubo can write to, under a `nubo` parent.
    pub fn detect() -> Cgroups {
        let root = PathBuf::from("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            let parent = root.join("nubo");
            return match fs::create_dir_all(&parent)
                .and_then(|_| fs::write(root.join("cgroup.subtree_control"), "+cpu +memory"))
                .and_then(|_| fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory"))
            {
                Ok(()) => Cgroups::V2(parent),
                Err(e) => Cgroups::Unavailable(format!("cgroup v2 is not writable: {e}")),
            };
        }
        let (memory, cpu) = (root.join("memory/nubo"), root.join("cpu/nubo"));
        match fs::create_dir_all(&memory).and_then(|_| fs::create_dir_all(&cpu)) {
            Ok(()) => Cgroups::V1 { memory, cpu },
            Err(e) => Cgroups::Unavailable(format!("cgroup v1 is not writable: {e}")),
        }
    }

    /// Moves `pid` into a cgroup of its own named `name`.
    pub fn place(&self, name: &str, pid: u32, vcpus: u32, memory_mib: u32) -> std::io::Result<()> {
        let bytes = (u64::from(memory_mib) + VMM_OVERHEAD_MIB) * 1024 * 1024;
        let quota = (u64::from(vcpus) + 1) * CPU_PERIOD_US;
        match self {
            Cgroups::V2(parent) => {
                let dir = parent.join(name);
                fs::create_dir_all(&dir)?;
                fs::write(dir.join("memory.max"), bytes.to_string())?;
                fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
                fs::write(dir.join("cgroup.procs"), pid.to_string())
            }
            Cgroups::V1 { memory, cpu } => {
                let (m, c) = (memory.join(name), cpu.join(name));
                fs::create_dir_all(&m)?;
                fs::create_dir_all(&c)?;
                fs::write(m.join("memory.limit_in_bytes"), bytes.to_string())?;
                fs::write(c.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                fs::write(c.join("cpu.cfs_quota_us"), quota.to_string())?;
                fs::write(m.join("cgroup.procs"), pid.to_string())?;
                fs::write(c.join("cgroup.procs"), pid.to_string())
            }
            Cgroups::Unavailable(_) => Ok(()),
        }
    }

    /// Removes the VM's cgroup once its process is gone.
    pub fn remove(&self, name: &str) {
        match self {
            Cgroups::V2(parent) => {
                let _ = fs::remove_dir(parent.join(name));
            }
            Cgroups::V1 { memory, cpu } => {
                let _ = fs::remove_dir(memory.join(name));
                let _ = fs::remove_dir(cpu.join(name));
            }
            Cgroups::Unavailable(_) => {}
        }
    }

    /// The cgroup names that exist, to find ones no VM owns.
    pub fn names(&self) -> Vec<String> {
        let dir = match self {
            Cgroups::V2(parent) => parent,
            Cgroups::V1 { memory, .. } => memory,
            Cgroups::Unavailable(_) => return Vec::new(),
        };
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}
