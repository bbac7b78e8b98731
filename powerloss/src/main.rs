//! `firedrill-powerloss`: mount the power-loss filesystem in the foreground.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use firedrill_powerloss::{Options, Shutdown, serve};

const ABOUT: &str = "FUSE passthrough that loses written-but-unfsynced data on power loss";

const LONG_ABOUT: &str = "\
Mounts, in the foreground, a FUSE filesystem at MOUNTPOINT that mirrors BACKING, except that \
file contents written through the mount are held in this process's memory until the file is \
fsynced. Use it under a database or message broker to check that what it acknowledged was \
really on disk: run it, point the program at MOUNTPOINT, SIGKILL this daemon (the power cut), \
and look at BACKING, which then holds exactly what was fsynced.

What is durable (reaches BACKING):
  - file data, only when fsync(2) or fdatasync(2) is called on the file: the file's dirty \
extents are written to the backing file, which is fsynced. close(2) does NOT make data \
durable, as with a real page cache.
  - metadata, immediately: create, mkdir, unlink, rmdir, rename, symlink, truncate, chmod, \
chown, utimes (a conservative model: metadata is journalled). A file created and written \
but never fsynced survives a power cut with length zero.
Reads, stat and directory listings see the merged view (backing bytes overlaid by dirty \
writes); dirty data follows a file through rename.";

const AFTER_HELP: &str = "\
Signals:
  SIGKILL          power cut: unsynced data is lost with the process. The mount stays behind \
dead (ENOTCONN); detach it with `umount -l MOUNTPOINT`.
  SIGUSR1          power cut on request: drop all unsynced data, unmount, exit 0.
  SIGTERM, SIGINT  clean shutdown: flush and fsync all dirty data, unmount, exit 0. Stop the \
program using the mount first: if files are still open the mount is detached lazily and \
they fail with ENOTCONN once this daemon exits.
  An external `umount MOUNTPOINT` is treated as a clean shutdown too.

Readiness: once mounted and ready, one line goes to stderr:
  powerloss: serving MOUNTPOINT over BACKING (pid N)
and /proc/self/mountinfo (same mount namespace) lists MOUNTPOINT as its 5th field with \
filesystem type `fuse.powerloss` (after the ` - ` separator). Poll for either; requests are \
served from the moment the mount is listed.

Needs root and /dev/fuse (no fusermount needed). The mount uses allow_other and \
default_permissions, so root processes in other network namespaces of the same mount \
namespace can use it. Unsupported: hard links (EPERM), extended attributes, mknod; shared \
writable mmap is not modelled.

Exit status: 0 after a signal-driven shutdown or unmount, 1 on error (bad paths, a \
mountpoint that already has a FUSE mount, live or dead; missing /dev/fuse, not root, mount \
failure, flush failure).";

#[derive(Debug, Parser)]
#[command(
    name = "firedrill-powerloss",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Directory holding the durable data (must exist).
    #[arg(long, value_name = "DIR")]
    backing: PathBuf,
    /// Directory to mount on, outside BACKING (must exist).
    #[arg(long, value_name = "DIR")]
    mountpoint: PathBuf,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4, value_name = "N")]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = Options {
        backing: cli.backing,
        mountpoint: cli.mountpoint,
        threads: cli.threads,
    };
    match serve(&opts) {
        Ok(Shutdown::Clean(s)) => {
            let _ = writeln!(
                io::stderr(),
                "powerloss: clean shutdown: flushed {} bytes in {} file(s)",
                s.bytes,
                s.files
            );
            ExitCode::SUCCESS
        }
        Ok(Shutdown::PowerCut { dropped_bytes }) => {
            let _ = writeln!(
                io::stderr(),
                "powerloss: power cut: dropped {dropped_bytes} unsynced bytes"
            );
            ExitCode::SUCCESS
        }
        Ok(Shutdown::Unmounted(s)) => {
            let _ = writeln!(
                io::stderr(),
                "powerloss: unmounted: flushed {} bytes in {} file(s)",
                s.bytes,
                s.files
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(io::stderr(), "firedrill-powerloss: error: {e}");
            ExitCode::FAILURE
        }
    }
}
