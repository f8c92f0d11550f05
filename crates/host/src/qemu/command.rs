//! The QEMU command line of one VM: a `microvm` booting its image's kernel
//! directly, its serial console to a file, QMP on a socket, and its configuration
//! handed to the guest through fw_cfg.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::accel::Accel;
use crate::{HostError, VmSpec};

/// How an image boots, as `nubod` registers it (the image's `image.json`, with
/// absolute paths).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageSpec {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
    /// The line the guest prints on its serial console once it is up; without
    /// one, a VM counts as running once its VMM runs.
    #[serde(default)]
    pub ready_marker: Option<String>,
    /// A root disk; each VM boots from a root volume, a copy-on-write overlay of it.
    #[serde(default)]
    pub disk: Option<DiskImage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiskImage {
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
}

impl ImageSpec {
    pub fn parse(json: &str) -> Result<ImageSpec, HostError> {
        let spec: ImageSpec = serde_json::from_str(json)
            .map_err(|e| HostError::BadImage(format!("image spec: {e}")))?;
        let disk = spec.disk.as_ref().map(|d| &d.path);
        for file in std::iter::once(&spec.kernel)
            .chain(spec.initrd.as_ref())
            .chain(disk)
        {
            if !file.is_file() {
                return Err(HostError::BadImage(format!(
                    "{} is missing",
                    file.display()
                )));
            }
        }
        Ok(spec)
    }
}

/// Files of one VM in its folder.
pub struct VmFiles {
    pub dir: PathBuf,
}

impl VmFiles {
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    pub fn user_data(&self) -> PathBuf {
        self.dir.join("user-data")
    }
    pub fn public_keys(&self) -> PathBuf {
        self.dir.join("public-keys")
    }
    /// The image's ready marker, kept for an agent that re-adopts the VM.
    pub fn marker(&self) -> PathBuf {
        self.dir.join("ready-marker")
    }
    /// The VM's published ports.
    pub fn published(&self) -> PathBuf {
        self.dir.join("published.json")
    }
    /// What the metadata service tells the VM of itself.
    pub fn metadata(&self) -> PathBuf {
        self.dir.join("metadata.json")
    }
    /// The VM's vCPUs and memory, which its cgroup caps.
    pub fn limits(&self) -> PathBuf {
        self.dir.join("limits.json")
    }
    /// The VM's port on a tenant network, if it has one.
    pub fn port(&self) -> PathBuf {
        self.dir.join("port.json")
    }
}

/// The command that makes a qcow2 overlay of an image's disk `base` (in
/// `format`), which the VM never writes.
pub fn overlay(base: &Path, format: &str, target: &Path) -> Command {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(base)
        .arg(target);
    cmd
}

/// A path inside a QEMU option value, where a comma must be doubled.
fn opt_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The process name of a VM's QEMU, which ties a pid back to its instance.
pub fn process_name(instance_id: &str) -> String {
    format!("nubo-{instance_id}")
}

/// How many volumes a VM can have attached at once: each is a virtio-blk-pci
/// device plugged into one of this many PCIe root ports, which QEMU creates
/// only at boot. Every VM pays for its ports at every boot whether it uses
/// them or not; measured under TCG, nubo-micro reaches its ready marker in
/// about 0.95 s with no port, 0.05–0.1 s later with 8, and 0.3 s later with 31
/// (the most pcie.0 takes). 8 is enough for instances that scale out rather
/// than up, at a cost within the noise of a boot.
pub const VOLUME_SLOTS: u32 = 8;

/// The id of the PCIe root port of volume slot `n`, the bus a volume's device
/// is added on.
pub fn slot_port(n: u32) -> String {
    format!("vs{n}")
}

pub struct Launch<'a> {
    pub binary: &'a Path,
    pub accel: Accel,
    pub tcg_tb_size_mib: u32,
    pub tsc_khz: Option<u64>,
    pub spec: &'a VmSpec,
    pub image: &'a ImageSpec,
    pub files: &'a VmFiles,
    /// The `-blockdev` and `-device` arguments of its volumes.
    pub disks: Vec<String>,
}

impl Launch<'_> {
    pub fn command(&self) -> Command {
        let spec = self.spec;
        let mut cmd = Command::new(self.binary);
        let name = process_name(&spec.instance_id);
        cmd.arg("-name").arg(format!("{name},process={name}"));
        match self.accel {
            Accel::Kvm => {
                cmd.args(["-accel", "kvm", "-cpu", "host"]);
            }
            Accel::Tcg => {
                // A bounded translation cache: QEMU's default is sized for one
                // big VM, not for a hundred small ones on one host.
                cmd.arg("-accel")
                    .arg(format!("tcg,tb-size={}", self.tcg_tb_size_mib));
            }
        }
        // PCIe (pcie=on) for the volume slots; virtio-mmio for the rest.
        cmd.args(["-machine", "microvm,pcie=on"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-smp")
            .arg(spec.vcpus.to_string())
            .arg("-m")
            .arg(format!("{}M", spec.memory_mib))
            .arg("-kernel")
            .arg(&self.image.kernel);
        if let Some(initrd) = &self.image.initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        let mut append = self.image.cmdline.clone();
        if let (Accel::Tcg, Some(khz)) = (self.accel, self.tsc_khz) {
            append.push_str(&format!(" tsc_early_khz={khz}"));
        }
        // microvm has no MCFG table, so the firmware refuses Linux control of
        // the ports' hot-plug (_OSC) unless Linux is told to take it.
        append.push_str(" pcie_ports=native");
        cmd.arg("-append").arg(append.trim());
        for n in 0..VOLUME_SLOTS {
            cmd.arg("-device").arg(format!(
                "pcie-root-port,id={},bus=pcie.0,chassis=1,slot={},io-reserve=0",
                slot_port(n),
                n + 1
            ));
        }
        // After the ports: QEMU makes devices in order, and a volume plugged
        // in at boot names its port as its bus.
        cmd.args(&self.disks);
        cmd.arg("-chardev")
            .arg(format!(
                "file,id=console,path={},logappend=on",
                opt_path(&self.files.console())
            ))
            .args(["-serial", "chardev:console"])
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                opt_path(&self.files.qmp())
            ))
            .arg("-fw_cfg")
            .arg(format!(
                "name=opt/nubo/instance-id,string={}",
                spec.instance_id
            ))
            .arg("-fw_cfg")
            .arg(format!(
                "name=opt/nubo/hostname,string={}",
                spec.instance_id
            ));
        if !spec.ssh_public_keys.is_empty() {
            cmd.arg("-fw_cfg").arg(format!(
                "name=opt/nubo/public-keys,file={}",
                opt_path(&self.files.public_keys())
            ));
        }
        if spec.user_data.is_some() {
            cmd.arg("-fw_cfg").arg(format!(
                "name=opt/nubo/user-data,file={}",
                opt_path(&self.files.user_data())
            ));
        }
        if let Some(nic) = &spec.nic {
            // vhost-net needs KVM's eventfds, and the host's vhost_net module.
            let vhost = self.accel == Accel::Kvm && Path::new("/dev/vhost-net").exists();
            cmd.args(super::network::qemu_args(&spec.instance_id, nic, vhost));
        }
        cmd.arg("-pidfile")
            .arg(self.files.pidfile())
            .arg("-daemonize");
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(accel: Accel) -> Vec<String> {
        args_with(accel, Vec::new())
    }

    fn args_with(accel: Accel, disks: Vec<String>) -> Vec<String> {
        let spec = VmSpec {
            instance_id: "i-0123456789abcdef".into(),
            instance_type: "t1.micro".into(),
            region: "r1".into(),
            vcpus: 1,
            memory_mib: 128,
            image: String::new(),
            user_data: None,
            hostname: "i-0123456789abcdef".into(),
            ssh_public_keys: Vec::new(),
            nic: None,
            root_volume: None,
            volumes: Vec::new(),
            metadata_tokens_required: false,
        };
        let image = ImageSpec {
            kernel: "vmlinux".into(),
            initrd: None,
            cmdline: "console=ttyS0".into(),
            ready_marker: None,
            disk: Some(DiskImage {
                path: "disk.qcow2".into(),
                format: "qcow2".into(),
            }),
        };
        let files = VmFiles { dir: "vm".into() };
        let launch = Launch {
            binary: Path::new("qemu-system-x86_64"),
            accel,
            tcg_tb_size_mib: 32,
            tsc_khz: Some(2_600_000),
            spec: &spec,
            image: &image,
            files: &files,
            disks,
        };
        let cmd = launch.command();
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value<'a>(args: &'a [String], flag: &str) -> &'a str {
        let i = args.iter().position(|a| a == flag).unwrap();
        &args[i + 1]
    }

    #[test]
    fn volume_slots_are_pcie_root_ports_the_kernel_hot_plugs() {
        for accel in [Accel::Tcg, Accel::Kvm] {
            let args = args(accel);
            assert_eq!(value(&args, "-machine"), "microvm,pcie=on");
            let append = value(&args, "-append");
            assert!(append.ends_with(" pcie_ports=native"), "{append}");
            assert_eq!(
                append.contains("tsc_early_khz=2600000"),
                accel == Accel::Tcg
            );
            let ports: Vec<&String> = args
                .iter()
                .filter(|a| a.starts_with("pcie-root-port,"))
                .collect();
            assert_eq!(ports.len(), VOLUME_SLOTS as usize);
            for (n, port) in (0..).zip(ports) {
                let want = format!(
                    "pcie-root-port,id={},bus=pcie.0,chassis=1,slot={},io-reserve=0",
                    slot_port(n),
                    n + 1
                );
                assert_eq!(port, &want);
            }
            assert_eq!(slot_port(0), "vs0");
        }
    }

    #[test]
    fn volumes_plugged_in_at_boot_come_after_the_ports_they_sit_on() {
        let disk = "virtio-blk-pci,bus=vs0,addr=0,drive=vol-1,id=vol-1,serial=vol-1";
        let args = args_with(Accel::Tcg, vec!["-device".into(), disk.into()]);
        let at = |want: &str| args.iter().position(|a| a.starts_with(want)).unwrap();
        assert!(at("pcie-root-port,id=vs0,") < at(disk), "{args:?}");
    }
}
