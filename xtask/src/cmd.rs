//! Running external commands. Each is echoed as `$ cmd args` (to stderr)
//! before it runs, so a CI log shows exactly what ran and can be replayed by
//! pasting the line into a shell.

use std::borrow::Cow;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output};

/// Why a task failed, and the code xtask exits with.
pub struct Error {
    pub message: String,
    pub code: u8,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

pub type Result<T = ()> = std::result::Result<T, Error>;

/// Echoes `cmd` and starts it with the stdio it was given (inherited by default).
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    eprintln!("$ {}", line(cmd));
    cmd.spawn().map_err(|e| cannot_run(cmd, e))
}

/// Echoes `cmd`, runs it to completion and returns how it ended.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    spawn(cmd)?.wait().map_err(|e| cannot_run(cmd, e))
}

/// Echoes `cmd` and runs it; fails unless it succeeds.
pub fn run(cmd: &mut Command) -> Result {
    let status = status(cmd)?;
    check(cmd, status)
}

/// Echoes `cmd` and runs it with its output captured, for the queries whose
/// answer we read.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    eprintln!("$ {}", line(cmd));
    cmd.output().map_err(|e| cannot_run(cmd, e))
}

/// Turns a failed `status` of `cmd` into an error carrying its exit code.
pub fn check(cmd: &Command, status: ExitStatus) -> Result {
    if status.success() {
        return Ok(());
    }
    // A signal is reported the way shells do: 128 + its number.
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(signal).map_or(1, |s| s.saturating_add(128)),
        (None, None) => 1,
    };
    Err(Error {
        message: format!("`{}` failed ({status})", line(cmd)),
        code: code.max(1),
    })
}

/// Whether we run as root: then apt-get needs no sudo, and PostgreSQL, which
/// refuses to run as root, must run as another user.
/// An I/O error's message, prefixed by the path it happened on.
pub fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(format!("{}: {e}", path.display()))
}

pub fn is_root() -> Result<bool> {
    let out = capture(Command::new("id").arg("-u"))?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Single-quotes `word` for sh unless it is made of plainly safe characters.
pub fn quote(word: &str) -> Cow<'_, str> {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if safe {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// `cmd` as a shell line, with the environment variables it sets up front.
fn line(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(name, value)| {
        let value = value?.to_string_lossy();
        Some(format!("{}={}", name.to_string_lossy(), quote(&value)))
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| quote(&word.to_string_lossy()).into_owned());
    envs.chain(words).collect::<Vec<_>>().join(" ")
}

fn cannot_run(cmd: &Command, e: std::io::Error) -> Error {
    Error::new(format!(
        "cannot run {}: {e}",
        cmd.get_program().to_string_lossy()
    ))
}
