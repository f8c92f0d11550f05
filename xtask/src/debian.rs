//! The debian-12 image: Debian bookworm with systemd, OpenSSH and cloud-init,
//! made with debootstrap from the Debian mirror the host's apt uses, as an
//! ext4 disk (qcow2) plus the kernel and initrd that nubo boots directly.
//!
//! Everything runs as root on the host, without loop mounts: packages install
//! in a chroot and `mkfs.ext4 -d` fills the filesystem from that folder.

use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Error, Result, io};
use crate::packages;

const SUITE: &str = "bookworm";
const SOURCE: &str = "images/debian-12";
/// What the build runs on the host.
pub const HOST_PACKAGES: &[&str] = &[
    "debootstrap",
    "debian-archive-keyring",
    "e2fsprogs",
    "qemu-utils",
];
/// What the image holds on top of debootstrap's minbase. dbus is for logind,
/// which turns the ACPI power button (how nubo stops a VM) into a shutdown.
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "systemd-resolved",
    "dbus",
    "openssh-server",
    "cloud-init",
    "sudo",
    "iproute2",
    "ca-certificates",
    "initramfs-tools",
    "linux-image-cloud-amd64",
];
/// Files of `SOURCE` and where they go in the image. They are in place before
/// the packages install, so that dpkg leaves the docs out and the kernel's
/// initrd is made once, with the modules microvm needs.
const FILES: &[(&str, &str)] = &[
    ("nodoc", "etc/dpkg/dpkg.cfg.d/nodoc"),
    ("initramfs-modules", "etc/initramfs-tools/modules"),
    ("initramfs.conf", "etc/initramfs-tools/conf.d/nubo.conf"),
    ("hostname", "etc/hostname"),
    ("hosts", "etc/hosts"),
    ("fstab", "etc/fstab"),
    ("dhcp.network", "etc/systemd/network/50-dhcp.network"),
    ("sshd.conf", "etc/ssh/sshd_config.d/nubo.conf"),
    (
        "ssh-host-keys.conf",
        "etc/systemd/system/ssh.service.d/host-keys.conf",
    ),
    ("nubo-up.service", "etc/systemd/system/nubo-up.service"),
    ("cloud.cfg", "etc/cloud/cloud.cfg.d/90-nubo.cfg"),
];
/// Units Debian does not enable on install (resolved is, but says so here too).
const ENABLE: &[&str] = &[
    "systemd-networkd.service",
    "systemd-resolved.service",
    "nubo-up.service",
];
/// e2scrub_reap removes e2scrub's LVM snapshots, and there is no LVM here: it
/// would only cost seconds of a TCG guest's boot.
const DISABLE: &[&str] = &["e2scrub_reap.service"];
/// The root filesystem's size; the file is sparse, and qcow2 stores only what is used.
const DISK_BYTES: u64 = 2 << 30;
/// Bumped when this recipe changes in a way the inputs do not show.
const RECIPE: u32 = 1;

/// The built image's folder, building it if its inputs changed.
pub fn ensure() -> Result<PathBuf> {
    packages::ensure(HOST_PACKAGES)?;
    let cache = crate::cache::dir()?;
    let images = cache.join("images");
    fs::create_dir_all(&images).map_err(io(&images))?;
    let out = images.join(format!("debian-12-{:016x}", key()?));
    if out.join("image.json").exists() {
        return Ok(out);
    }
    // Two xtasks (a test run and `cargo xtask image`) must not share a build folder.
    let lock_path = images.join("debian-12.lock");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if out.join("image.json").exists() {
        return Ok(out);
    }
    let build = cache.join("build/debian-12");
    remove_build(&build)?;
    let root = build.join("root");
    let mirrors = host_mirrors()?;
    cmd::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--arch=amd64", SUITE])
            .arg(&root)
            .arg(&mirrors.debian)
            .stdout(io::stderr()),
    )?;
    configure(&root, &mirrors)?;
    install_packages(&root)?;
    make_unique(&root)?;
    let staging = out.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    copy_boot_files(&root, &staging)?;
    make_disk(&root, &build, &staging)?;
    let manifest = Path::new(SOURCE).join("image.json");
    fs::copy(&manifest, staging.join("image.json")).map_err(io(&manifest))?;
    fs::rename(&staging, &out).map_err(io(&out))?;
    remove_build(&build)?;
    Ok(out)
}

fn key() -> Result<u64> {
    let mut h = DefaultHasher::new();
    RECIPE.hash(&mut h);
    SUITE.hash(&mut h);
    PACKAGES.hash(&mut h);
    FILES.hash(&mut h);
    ENABLE.hash(&mut h);
    DISABLE.hash(&mut h);
    let mut names: Vec<_> = fs::read_dir(SOURCE)
        .map_err(io(Path::new(SOURCE)))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<_>>()
        .map_err(io(Path::new(SOURCE)))?;
    names.sort();
    for path in names {
        path.hash(&mut h);
        fs::read(&path).map_err(io(&path))?.hash(&mut h);
    }
    Ok(h.finish())
}

/// Removes a previous (failed) build, refusing if something is still mounted
/// in it (debootstrap mounts /proc and /sys in the chroot while it works):
/// deleting through a mount would delete the host's files.
fn remove_build(build: &Path) -> Result {
    let mounts = fs::read_to_string("/proc/self/mounts").map_err(io(Path::new("/proc")))?;
    let prefix = format!("{}/", build.display());
    if let Some(mount) = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .find(|point| point.starts_with(&prefix))
    {
        return Err(Error::new(format!(
            "{mount} is mounted: unmount it, then build again"
        )));
    }
    match fs::remove_dir_all(build) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io(build)(e)),
        _ => Ok(()),
    }
}

/// Where the host's apt gets Debian from: the image is built from (and its
/// apt points at) the same mirror or proxy.
struct Mirrors {
    debian: String,
    security: Option<String>,
}

/// An apt source: (URI, suite, components).
type Source = (String, String, Vec<String>);

fn host_mirrors() -> Result<Mirrors> {
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir(dir) {
        let mut more: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut sources = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(deb822_sources(&text)),
            Some("list") => sources.extend(one_line_sources(&text)),
            _ => {}
        }
    }
    // Debian's own archives, not third-party ones that name their suite after
    // the release: those seldom have a `main` component.
    let uri_of = |wanted: &dyn Fn(&str) -> bool| {
        sources
            .iter()
            .find(|(uri, suite, components)| {
                (uri.starts_with("http://") || uri.starts_with("https://"))
                    && wanted(suite)
                    && components.iter().any(|c| c == "main")
            })
            .map(|(uri, ..)| uri.trim_end_matches('/').to_owned())
    };
    let debian = uri_of(&|suite| !suite.contains('-')).ok_or_else(|| {
        Error::new("no Debian mirror (a `deb` source of a release with `main`) in /etc/apt")
    })?;
    let security = uri_of(&|suite| suite.ends_with("-security"));
    Ok(Mirrors { debian, security })
}

/// The `deb` sources of a deb822 `.sources` file.
fn deb822_sources(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Vec<String> {
            stanza
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                .map(|(_, value)| value.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        if !field("Types").iter().any(|t| t == "deb") || field("Enabled") == ["no"] {
            continue;
        }
        for uri in field("URIs") {
            for suite in field("Suites") {
                sources.push((uri.clone(), suite, field("Components")));
            }
        }
    }
    sources
}

/// The `deb` lines of a one-line-style `.list` file.
fn one_line_sources(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let Some(rest) = line.trim().strip_prefix("deb ") else {
            continue;
        };
        // Options such as `[arch=amd64 signed-by=...]` come first.
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(options) => options.split_once(']').map_or("", |(_, rest)| rest),
            None => rest,
        };
        let mut words = rest.split_whitespace().map(String::from);
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            sources.push((uri, suite, words.collect()));
        }
    }
    sources
}

/// Prepares the bootstrapped system for the packages: the apt sources (with
/// updates and security), no service starts in the chroot, this image's files.
fn configure(root: &Path, mirrors: &Mirrors) -> Result {
    let mut sources = format!(
        "Types: deb\nURIs: {}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n",
        mirrors.debian
    );
    if let Some(security) = &mirrors.security {
        sources.push_str(&format!(
            "\nTypes: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        ));
    }
    write(
        root,
        "etc/apt/sources.list.d/debian.sources",
        &sources,
        0o644,
    )?;
    let list = root.join("etc/apt/sources.list");
    fs::remove_file(&list).map_err(io(&list))?;
    // The chroot shares the host's network: its sshd must not start there.
    write(root, "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)?;
    for (name, target) in FILES {
        let path = Path::new(SOURCE).join(name);
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        write(root, target, &text, 0o644)?;
    }
    // debootstrap unpacked its packages before `nodoc` was in place.
    let share = root.join("usr/share");
    cmd::run(
        Command::new("find")
            .args(["doc", "man", "info", "locale", "-mindepth", "1"])
            .args(["(", "-type", "d", "-empty", "-o", "!", "-type", "d"])
            .args(["!", "-name", "copyright", "!", "-name", "locale.alias", ")"])
            .arg("-delete")
            .current_dir(&share),
    )
}

fn write(root: &Path, target: &str, text: &str, mode: u32) -> Result {
    let path = root.join(target);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    fs::write(&path, text).map_err(io(&path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io(&path))
}

/// `cmd` run in the chroot, never asking anything, in a locale it has.
fn chroot(root: &Path, cmd: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    c.arg(root)
        .args(cmd)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8")
        .stdout(io::stderr());
    c
}

fn install_packages(root: &Path) -> Result {
    // Our files replace the packages' defaults (/etc/initramfs-tools/modules).
    let apt = ["apt-get", "-y", "-o", "Dpkg::Options::=--force-confold"];
    cmd::run(&mut chroot(root, &["apt-get", "update"]))?;
    cmd::run(&mut chroot(root, &[&apt[..], &["upgrade"]].concat()))?;
    cmd::run(&mut chroot(
        root,
        &[&apt[..], &["install", "--no-install-recommends"], PACKAGES].concat(),
    ))?;
    cmd::run(&mut chroot(
        root,
        &[&["systemctl", "enable"], ENABLE].concat(),
    ))?;
    cmd::run(&mut chroot(
        root,
        &[&["systemctl", "disable"], DISABLE].concat(),
    ))?;
    cmd::run(&mut chroot(root, &["apt-get", "clean"]))
}

/// Leaves out everything that must differ between instances or that only the
/// build needed: host keys (made at first boot), the machine id (an empty file
/// makes systemd create one), apt's lists, the host's resolver.
fn make_unique(root: &Path) -> Result {
    remove_files(&root.join("etc/ssh"), |name| name.starts_with("ssh_host_"))?;
    remove_files(&root.join("var/lib/apt/lists"), |_| true)?;
    remove_files(&root.join("var/lib/dbus"), |name| name == "machine-id")?;
    remove_files(&root.join("usr/sbin"), |name| name == "policy-rc.d")?;
    write(root, "etc/machine-id", "", 0o444)?;
    let resolv = root.join("etc/resolv.conf");
    fs::remove_file(&resolv).map_err(io(&resolv))?;
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &resolv)
        .map_err(io(&resolv))
}

/// Removes the files (not folders) of `dir` whose name `matches`.
fn remove_files(dir: &Path, matches: impl Fn(&str) -> bool) -> Result {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let is_dir = entry.file_type().map_err(io(dir))?.is_dir();
        if !is_dir && matches(&entry.file_name().to_string_lossy()) {
            fs::remove_file(entry.path()).map_err(io(dir))?;
        }
    }
    Ok(())
}

/// The kernel and initrd, which nubo hands to QEMU (microvm boots no disk).
fn copy_boot_files(root: &Path, out: &Path) -> Result {
    let boot = root.join("boot");
    for (prefix, name) in [("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")] {
        let found: Vec<_> = fs::read_dir(&boot)
            .map_err(io(&boot))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .collect();
        let [path] = &found[..] else {
            return Err(Error::new(format!(
                "{}: expected one {prefix}*, found {}",
                boot.display(),
                found.len()
            )));
        };
        fs::copy(path, out.join(name)).map_err(io(path))?;
    }
    Ok(())
}

/// The root filesystem, filled from `root` by mkfs, converted to qcow2.
fn make_disk(root: &Path, build: &Path, out: &Path) -> Result {
    let raw = build.join("disk.raw");
    File::create(&raw)
        .and_then(|f| f.set_len(DISK_BYTES))
        .map_err(io(&raw))?;
    cmd::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-L", "root", "-d"])
            .arg(root)
            .arg(&raw),
    )?;
    cmd::run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(out.join("disk.qcow2")),
    )
}
