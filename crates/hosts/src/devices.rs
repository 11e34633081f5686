//! `devices`: loop devices of configured sizes, and named physical devices, for cinder,
//! swift or ceph.
//!
//! A loop device is backed by `<dir>/<name>.img` (a sparse file); an existing backing file
//! of the right size that is attached already is reused, so the file name is the record of
//! what was made and a second run is a no-op. A backing file of another size fails the step
//! rather than being resized. `<dir>/devices.tsv` lists what the step set up: name, device,
//! size in bytes, file system, label (one line each; named devices use their path as name).
//!
//! A device gets its configured file system and label unless it has them already. A named
//! device that carries another file system or a partition table fails the step untouched
//! unless `wipe = true`; a mounted device is never wiped.

use std::time::Duration;

use gate_core::{Error, HostIo, Result, Transport};

use crate::config::{DevicesStep, Filesystem};
use crate::remote::{self, script};

/// `$1` dir, `$2` name, `$3` size in bytes; prints the loop device.
const LOOP: &str = r#"
dir=$1 name=$2 size=$3
f=$dir/$name.img
mkdir -p -- "$dir"
if [ -e "$f" ]; then
  have=$(stat -c %s -- "$f")
  if [ "$have" != "$size" ]; then
    echo "$f exists with $have bytes, but $size are configured; remove it to resize" >&2
    exit 1
  fi
else
  truncate -s "$size" -- "$f"
fi
dev=$(losetup --list --noheadings --output NAME --associated "$f" | head -n 1)
[ -n "$dev" ] || dev=$(losetup --find --show -- "$f")
printf '%s\n' "$dev"
"#;

/// `$1` device, `$2` file system (empty: none), `$3` label, `$4` wipe (`true`/`false`).
const FORMAT: &str = r#"
dev=$1 fs=$2 label=$3 wipe=$4
[ -b "$dev" ] || { echo "$dev is not a block device" >&2; exit 1; }
probe() { blkid -p -o value -s "$1" -- "$dev" 2>/dev/null || true; }
cur=$(probe TYPE) pt=$(probe PTTYPE) curlabel=$(probe LABEL)
if [ -z "$pt" ] && [ "$cur" = "$fs" ] && { [ -z "$fs" ] || [ "$curlabel" = "$label" ]; }; then
  echo "$dev is ready: ${fs:-no file system}${label:+ labelled $label}"
  exit 0
fi
if [ -n "$cur$pt" ]; then
  what=${cur:+a file system ($cur)}
  what=${what:-a partition table ($pt)}
  if [ "$wipe" != true ]; then
    echo "$dev carries $what; not touching it (set wipe = true to wipe it)" >&2
    exit 3
  fi
  if [ -n "$(lsblk -nro MOUNTPOINT -- "$dev" | tr -d '[:space:]')" ]; then
    echo "$dev is mounted; not wiping it" >&2
    exit 1
  fi
  echo "wiping $what from $dev"
  wipefs -a -q -- "$dev"
fi
case $fs in
  ext4) mkfs.ext4 -q -F ${label:+-L "$label"} "$dev" ;;
  xfs) mkfs.xfs -q -f ${label:+-L "$label"} "$dev" ;;
esac
echo "$dev is ready: ${fs:-no file system}${label:+ labelled $label}"
"#;

/// One device set up: name, device path, size, file system, label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The configured name (or path of a named device).
    pub(crate) name: String,
    /// The block device.
    pub(crate) device: String,
    /// The size in bytes (0 when not known).
    pub(crate) size: u64,
    /// The file system, or `none`.
    pub(crate) filesystem: &'static str,
    /// The label, or empty.
    pub(crate) label: String,
}

/// The manifest text for `devices`.
pub(crate) fn manifest(devices: &[Prepared]) -> String {
    devices
        .iter()
        .map(|d| {
            format!(
                "{}\t{}\t{}\t{}\t{}\n",
                d.name, d.device, d.size, d.filesystem, d.label
            )
        })
        .collect()
}

async fn format(
    t: &dyn Transport,
    hio: &HostIo,
    device: &str,
    filesystem: Filesystem,
    label: &str,
    wipe: bool,
    timeout: Duration,
) -> Result<()> {
    let fs = filesystem.name().unwrap_or("");
    let wipe = if wipe { "true" } else { "false" };
    remote::run(
        t,
        hio,
        &script(FORMAT, [device, fs, label, wipe], timeout),
        &format!("prepare {device}"),
    )
    .await
    .map(|_| ())
}

/// The `devices` step on one host.
pub(crate) async fn prepare(
    t: &dyn Transport,
    hio: &HostIo,
    step: &DevicesStep,
    timeout: Duration,
) -> Result<()> {
    let mut done = Vec::new();
    for dev in &step.loops {
        let size = dev.size.bytes().to_string();
        let out = remote::run(
            t,
            hio,
            &script(
                LOOP,
                [step.dir.as_str(), dev.name.as_str(), size.as_str()],
                timeout,
            ),
            &format!("set up the loop device `{}`", dev.name),
        )
        .await?;
        let device = out.stdout.lines().last().unwrap_or("").trim().to_owned();
        if !device.starts_with("/dev/") {
            return Err(Error::Host {
                host: t.host().name.clone(),
                message: format!(
                    "losetup gave no device for `{}`: {:?}",
                    dev.name, out.stdout
                ),
            });
        }
        let label = match (dev.filesystem, &dev.label) {
            (Filesystem::None, _) => String::new(),
            (_, Some(label)) => label.clone(),
            (_, None) => dev.name.clone(),
        };
        // The backing file is gate's own: whatever is on it may be replaced.
        format(t, hio, &device, dev.filesystem, &label, true, timeout).await?;
        done.push(Prepared {
            name: dev.name.clone(),
            device,
            size: dev.size.bytes(),
            filesystem: dev.filesystem.name().unwrap_or("none"),
            label,
        });
    }
    for dev in &step.devices {
        let label = dev.label.clone().unwrap_or_default();
        format(t, hio, &dev.path, dev.filesystem, &label, dev.wipe, timeout).await?;
        done.push(Prepared {
            name: dev.path.clone(),
            device: dev.path.clone(),
            size: 0,
            filesystem: dev.filesystem.name().unwrap_or("none"),
            label,
        });
    }
    let path = format!("{}/devices.tsv", step.dir);
    let text = manifest(&done);
    if remote::read_file(t, hio, &path, timeout).await?.as_deref() != Some(text.as_str()) {
        remote::write_file(t, hio, &path, &text, "644", timeout).await?;
    }
    Ok(())
}
