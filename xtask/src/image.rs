//! `cargo xtask image`: builds the guest images from Debian packages, cached in
//! the cache dir under a hash of everything that goes into them: nubo-micro
//! (here) and debian-12 (`crate::debian`).
//!
//! nubo-micro: a kernel built from Debian's `linux-source` with the small config in
//! `images/nubo-micro/kernel.config` (booted uncompressed through PVH, which
//! under TCG starts far sooner than Debian's modular cloud kernel), and an
//! uncompressed initramfs of Debian's static busybox with nubo's init.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Error, Result, io};
use crate::packages;

/// Debian packages the build reads from.
const PACKAGES: &[&str] = &[
    "linux-source-6.1",
    "build-essential",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "xz-utils",
    "busybox-static",
];
const KERNEL_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
const SOURCE: &str = "images/nubo-micro";
/// Files of `SOURCE` that go into the initramfs and the manifest.
const INPUTS: &[&str] = &[
    "inittab",
    "rcS",
    "udhcpc.script",
    "poweroff-button",
    "image.json",
];
/// Bumped when this recipe changes in a way the inputs do not show.
const RECIPE: u32 = 1;

/// `cargo xtask image [--into DIR]`: builds the images and installs them into
/// DIR (default `.nubo/images`, where `nubod --data-dir .nubo` looks).
pub fn run(args: &[String]) -> Result {
    let into = match args {
        [] => PathBuf::from(".nubo/images"),
        [flag, dir] if flag == "--into" => PathBuf::from(dir),
        _ => return Err(Error::new("usage: cargo xtask image [--into DIR]")),
    };
    for built in ensure_all()? {
        let target = install(&built, &into)?;
        eprintln!("installed {}", target.display());
    }
    Ok(())
}

/// Debian packages the image builds need, installed in one go before they
/// run side by side (two apt-gets at once would fight over apt's lock).
pub fn packages() -> Vec<&'static str> {
    [PACKAGES, crate::debian::HOST_PACKAGES].concat()
}

/// Every image's built folder: nubo-micro, then debian-12. They build side
/// by side: the kernel's compile and debootstrap's downloads overlap.
pub fn ensure_all() -> Result<[PathBuf; 2]> {
    packages::ensure(&packages())?;
    std::thread::scope(|s| {
        let debian = s.spawn(crate::debian::ensure);
        let micro = ensure();
        let debian = debian
            .join()
            .unwrap_or_else(|_| Err(Error::new("the debian-12 image build panicked")));
        Ok([micro?, debian?])
    })
}

/// The built image's folder, building it if its inputs changed. The kernel is
/// cached on its own, keyed by its config and source, so that a change to the
/// init alone does not rebuild it.
pub fn ensure() -> Result<PathBuf> {
    packages::ensure(PACKAGES)?;
    let cache = crate::cache::dir()?;
    let out = cache.join(format!("images/nubo-micro-{:016x}", image_key()?));
    if out.join("image.json").exists() {
        return Ok(out);
    }
    let kernel = ensure_kernel(&cache)?;
    let staging = out.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    fs::copy(kernel.join("vmlinux"), staging.join("vmlinux")).map_err(io(&kernel))?;
    build_initramfs(&kernel.join("gen_init_cpio"), &staging)?;
    fs::copy(
        Path::new(SOURCE).join("image.json"),
        staging.join("image.json"),
    )
    .map_err(io(&staging))?;
    fs::rename(&staging, &out).map_err(io(&out))?;
    Ok(out)
}

/// The folder with the built `vmlinux` (stripped) and `gen_init_cpio`.
fn ensure_kernel(cache: &Path) -> Result<PathBuf> {
    let key = kernel_key()?;
    let out = cache.join(format!("kernels/{key:016x}"));
    if out.join("vmlinux").exists() && out.join("gen_init_cpio").exists() {
        return Ok(out);
    }
    let build = cache.join(format!("build/kernel-{key:016x}"));
    let tree = build.join("linux");
    build_kernel(&build, &tree)?;
    let staging = out.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    cmd::run(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(staging.join("vmlinux"))
            .arg(tree.join("vmlinux")),
    )?;
    fs::copy(
        tree.join("usr/gen_init_cpio"),
        staging.join("gen_init_cpio"),
    )
    .map_err(io(&tree))?;
    fs::rename(&staging, &out).map_err(io(&out))?;
    let _ = fs::remove_dir_all(&build);
    Ok(out)
}

fn package_version(name: &str) -> Result<String> {
    let out = cmd::capture(Command::new("dpkg-query").args(["-W", "-f=${Version}", name]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kernel_key() -> Result<u64> {
    let mut h = DefaultHasher::new();
    RECIPE.hash(&mut h);
    let config = Path::new(SOURCE).join("kernel.config");
    fs::read(&config).map_err(io(&config))?.hash(&mut h);
    package_version("linux-source-6.1")?.hash(&mut h);
    Ok(h.finish())
}

fn image_key() -> Result<u64> {
    let mut h = DefaultHasher::new();
    kernel_key()?.hash(&mut h);
    for name in INPUTS {
        let path = Path::new(SOURCE).join(name);
        fs::read(&path).map_err(io(&path))?.hash(&mut h);
    }
    package_version("busybox-static")?.hash(&mut h);
    Ok(h.finish())
}

fn build_kernel(build: &Path, tree: &Path) -> Result {
    if !tree.join("Makefile").exists() {
        let _ = fs::remove_dir_all(build);
        fs::create_dir_all(build).map_err(io(build))?;
        cmd::run(
            Command::new("tar")
                .arg("-xf")
                .arg(KERNEL_TARBALL)
                .arg("-C")
                .arg(build)
                .arg("--strip-components=1")
                .arg("--one-top-level=linux"),
        )?;
    }
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.current_dir(tree).args(args);
        c
    };
    cmd::run(&mut make(&["tinyconfig"]))?;
    let fragment = std::path::absolute(Path::new(SOURCE).join("kernel.config"))
        .map_err(|e| Error::new(e.to_string()))?;
    cmd::run(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(tree)
            .args(["-m", ".config"])
            .arg(&fragment),
    )?;
    cmd::run(&mut make(&["olddefconfig"]))?;
    let config = fs::read_to_string(tree.join(".config")).map_err(io(tree))?;
    let wanted = fs::read_to_string(&fragment).map_err(io(&fragment))?;
    for line in wanted.lines() {
        let kept = if let Some(off) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            !config.lines().any(|l| l.starts_with(&format!("{off}=")))
        } else if line.starts_with("CONFIG_") {
            config.lines().any(|l| l == line)
        } else {
            true
        };
        if !kept {
            return Err(Error::new(format!(
                "kernel config: {line} did not survive olddefconfig (a dependency decides otherwise)"
            )));
        }
    }
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    cmd::run(&mut make(&[&jobs, "vmlinux"]))?;
    cmd::run(Command::new("cc").current_dir(tree).args([
        "-O2",
        "-o",
        "usr/gen_init_cpio",
        "usr/gen_init_cpio.c",
    ]))
}

/// Lays out the initramfs as a `gen_init_cpio` list (device nodes without root).
fn build_initramfs(gen_init_cpio: &Path, out: &Path) -> Result {
    let src = std::path::absolute(SOURCE).map_err(|e| Error::new(e.to_string()))?;
    let mut list = String::new();
    for dir in [
        "/dev",
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/etc/init.d",
        "/etc/acpi",
        "/etc/acpi/PWRF",
        "/proc",
        "/sys",
        "/run",
        "/tmp",
        "/root",
        "/var",
    ] {
        list.push_str(&format!("dir {dir} 0755 0 0\n"));
    }
    list.push_str("nod /dev/console 0600 0 0 c 5 1\n");
    list.push_str("file /bin/busybox /bin/busybox 0755 0 0\n");
    list.push_str("slink /init /bin/busybox 0777 0 0\n");
    let applets = cmd::capture(Command::new("/bin/busybox").arg("--list-full"))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "bin/busybox" && !applet.is_empty() {
            list.push_str(&format!("slink /{applet} /bin/busybox 0777 0 0\n"));
        }
    }
    for (target, name, mode) in [
        ("/etc/inittab", "inittab", "0644"),
        ("/etc/init.d/rcS", "rcS", "0755"),
        ("/etc/udhcpc.script", "udhcpc.script", "0755"),
        ("/etc/acpi/PWRF/00000080", "poweroff-button", "0755"),
    ] {
        list.push_str(&format!(
            "file {target} {} {mode} 0 0\n",
            src.join(name).display()
        ));
    }
    let list_path = out.join("initramfs.list");
    fs::write(&list_path, list).map_err(io(&list_path))?;
    let cpio = cmd::capture(Command::new(gen_init_cpio).arg(&list_path))?;
    if !cpio.status.success() {
        return Err(Error::new(format!(
            "gen_init_cpio: {}",
            String::from_utf8_lossy(&cpio.stderr)
        )));
    }
    let path = out.join("initramfs.cpio");
    fs::write(&path, cpio.stdout).map_err(io(&path))?;
    fs::remove_file(&list_path).map_err(io(&list_path))
}

/// Builds the images if need be and installs them in the cache's `installed`
/// dir, which tests and benchmarks point nubod at.
pub fn ensure_installed() -> Result<PathBuf> {
    let built = ensure_all()?;
    let images = built[0]
        .parent()
        .map(|dir| dir.join("installed"))
        .ok_or_else(|| Error::new("the image cache has no parent"))?;
    for image in &built {
        install(image, &images)?;
    }
    Ok(images)
}

/// Copies a built image, the cache folder `<name>-<key>`, to `into/<name>`,
/// replacing what was there; returns that folder. Files are hard-linked when
/// they can be (a disk is hundreds of MB): nothing writes to an installed
/// image, whose disk is only ever the read-only backing file of overlays.
pub fn install(built: &Path, into: &Path) -> Result<PathBuf> {
    let name = built
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('-'))
        .map(|(name, _key)| name)
        .ok_or_else(|| Error::new(format!("{}: not a built image", built.display())))?;
    let target = into.join(name);
    let staging = into.join(format!(".{name}.partial"));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    for entry in fs::read_dir(built).map_err(io(built))? {
        let from = entry.map_err(io(built))?.path();
        let to = staging.join(from.file_name().unwrap_or_default());
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io(&from))?;
        }
    }
    let _ = fs::remove_dir_all(&target);
    fs::rename(&staging, &target).map_err(io(&target))?;
    Ok(target)
}
