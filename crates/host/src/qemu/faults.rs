//! Fault injection, for tests of what a failure or a crash at each step of an
//! instance start leaves behind. `nubod --fault-file PATH` names a file of
//! lines `STEP=fail` or `STEP=crash`: the first time a start reaches STEP,
//! its line is consumed and the step fails (as the real one would, with an
//! error the start reports), or the whole process is killed on the spot, as
//! a crash or `kill -9` would. Without the file this costs nothing.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::HostError;

/// The steps of an instance start, in the order a start takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The network's rules are applied (anti-spoofing, security groups).
    Nftables,
    /// The VM's tap is made and plugged into the network's bridge.
    Tap,
    /// The network's DHCP server serves the VM.
    Dhcp,
    /// QEMU has started and daemonized.
    QemuExec,
    /// The VMM is in its own cgroup.
    Cgroup,
    /// The VMM's QMP socket is connected.
    Qmp,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Nftables,
        Step::Tap,
        Step::Dhcp,
        Step::QemuExec,
        Step::Cgroup,
        Step::Qmp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Nftables => "nftables",
            Step::Tap => "tap",
            Step::Dhcp => "dhcp",
            Step::QemuExec => "qemu-exec",
            Step::Cgroup => "cgroup",
            Step::Qmp => "qmp",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    file: Option<PathBuf>,
}

/// Faults are read and consumed one at a time.
static CONSUMING: Mutex<()> = Mutex::new(());

impl Faults {
    pub fn new(file: Option<PathBuf>) -> Faults {
        Faults { file }
    }

    /// Fails or crashes at `step` if the file asks for it.
    pub fn at(&self, step: Step) -> Result<(), HostError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let _one = CONSUMING.lock().unwrap_or_else(|e| e.into_inner());
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let (fail, crash) = (
            format!("{}=fail", step.name()),
            format!("{}=crash", step.name()),
        );
        let Some(hit) = text
            .lines()
            .map(str::trim)
            .find(|l| *l == fail || *l == crash)
        else {
            return Ok(());
        };
        let rest: String = text
            .lines()
            .filter(|l| l.trim() != hit)
            .map(|l| format!("{l}\n"))
            .collect();
        // Consumed before the crash: the restarted process must not crash again.
        if let Err(e) = std::fs::write(file, rest) {
            tracing::warn!(file = %file.display(), error = %e, "fault file not rewritten");
        }
        if hit == crash {
            tracing::warn!(step = step.name(), "crashing on purpose (fault file)");
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
        Err(HostError::Agent(format!(
            "{} failed: injected fault",
            step.name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once_at_its_step() {
        let file = std::env::temp_dir().join(format!(
            "nubo-faults-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&file, "dhcp=fail\nqmp=fail\n").unwrap();
        let faults = Faults::new(Some(file.clone()));
        assert!(faults.at(Step::Tap).is_ok());
        let e = faults.at(Step::Dhcp).unwrap_err();
        assert_eq!(e.to_string(), "host agent: dhcp failed: injected fault");
        assert!(faults.at(Step::Dhcp).is_ok(), "consumed");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "qmp=fail\n");
        assert!(Faults::default().at(Step::Qmp).is_ok());
        let _ = std::fs::remove_file(file);
    }
}
