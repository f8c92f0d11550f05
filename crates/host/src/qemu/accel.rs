//! Which accelerator a VM gets: KVM where the CPU has hardware virtualization,
//! TCG (QEMU's translator) everywhere else.
//!
//! A `/dev/kvm` alone does not mean hardware virtualization: a paravirtual KVM
//! (the `kvm_pvm` module, on hosts without VT-x/AMD-V) runs stock guest kernels
//! far slower than TCG does. So KVM needs the device, the CPU flag, and no PVM.

use std::fs::OpenOptions;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// The accelerator to use and why, in words for the log.
pub fn choose(choice: AccelChoice) -> (Accel, String) {
    match choice {
        AccelChoice::Kvm => (Accel::Kvm, "KVM, as configured".into()),
        AccelChoice::Tcg => (Accel::Tcg, "TCG, as configured".into()),
        AccelChoice::Auto => match hardware_kvm() {
            Ok(()) => (
                Accel::Kvm,
                "KVM: /dev/kvm with hardware virtualization".into(),
            ),
            Err(why) => (Accel::Tcg, format!("TCG: {why}")),
        },
    }
}

fn hardware_kvm() -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm cannot be opened ({e})"))?;
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err("/dev/kvm is paravirtual KVM (kvm_pvm), slower than TCG".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    if flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        Ok(())
    } else {
        Err("the CPU has no hardware virtualization (vmx/svm)".into())
    }
}

/// The host's TSC frequency in kHz, which a TCG guest is told so that it need not
/// calibrate its clock against the emulated PIT (slow, and it can hang).
pub fn tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0).round() as u64)
}
