//! Files over SFTP: whole trees up and down, symbolic links copied as links.

use std::io;
use std::path::{Path, PathBuf};

use ssh2::{Session, Sftp};

/// What went wrong, with the path.
pub struct Failure {
    /// The path involved.
    pub path: PathBuf,
    /// The cause.
    pub message: String,
}

fn fail(path: &Path, e: impl std::fmt::Display) -> Failure {
    Failure {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Creates `dir` and its parents on the remote side (existing ones are fine).
fn mkdir_p(sftp: &Sftp, dir: &Path) -> Result<(), Failure> {
    let mut so_far = PathBuf::new();
    for part in dir.components() {
        so_far.push(part);
        if so_far.as_os_str().is_empty() || so_far == Path::new("/") {
            continue;
        }
        if sftp.lstat(&so_far).is_err() {
            sftp.mkdir(&so_far, 0o755).map_err(|e| fail(&so_far, e))?;
        }
    }
    Ok(())
}

/// Copies the local file, link or tree `local` to `remote`.
pub fn upload(session: &Session, local: &Path, remote: &Path) -> Result<(), Failure> {
    let sftp = session.sftp().map_err(|e| fail(remote, e))?;
    if let Some(parent) = remote.parent() {
        mkdir_p(&sftp, parent)?;
    }
    upload_into(&sftp, local, remote)
}

fn upload_into(sftp: &Sftp, local: &Path, remote: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(local).map_err(|e| fail(local, e))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(local).map_err(|e| fail(local, e))?;
        let _ = sftp.unlink(remote);
        sftp.symlink(&target, remote).map_err(|e| fail(remote, e))
    } else if meta.is_dir() {
        if sftp.lstat(remote).is_err() {
            sftp.mkdir(remote, (meta.permissions().mode() & 0o7777) as i32)
                .map_err(|e| fail(remote, e))?;
        }
        for entry in std::fs::read_dir(local).map_err(|e| fail(local, e))? {
            let entry = entry.map_err(|e| fail(local, e))?;
            upload_into(sftp, &entry.path(), &remote.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        let mut from = std::fs::File::open(local).map_err(|e| fail(local, e))?;
        let mut to = sftp.create(remote).map_err(|e| fail(remote, e))?;
        io::copy(&mut from, &mut to).map_err(|e| fail(remote, e))?;
        let stat = ssh2::FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: Some(meta.permissions().mode() & 0o7777),
            atime: None,
            mtime: None,
        };
        sftp.setstat(remote, stat).map_err(|e| fail(remote, e))
    }
}

/// Copies the remote file, link or tree `remote` to `local`.
pub fn download(session: &Session, remote: &Path, local: &Path) -> Result<(), Failure> {
    let sftp = session.sftp().map_err(|e| fail(remote, e))?;
    if let Some(parent) = local.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
    }
    download_into(&sftp, remote, local)
}

fn download_into(sftp: &Sftp, remote: &Path, local: &Path) -> Result<(), Failure> {
    let stat = sftp.lstat(remote).map_err(|e| fail(remote, e))?;
    if stat.file_type().is_symlink() {
        let target = sftp.readlink(remote).map_err(|e| fail(remote, e))?;
        let _ = std::fs::remove_file(local);
        std::os::unix::fs::symlink(target, local).map_err(|e| fail(local, e))
    } else if stat.is_dir() {
        std::fs::create_dir_all(local).map_err(|e| fail(local, e))?;
        for (path, _) in sftp.readdir(remote).map_err(|e| fail(remote, e))? {
            let Some(name) = path.file_name() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            download_into(sftp, &remote.join(name), &local.join(name))?;
        }
        Ok(())
    } else {
        let mut from = sftp.open(remote).map_err(|e| fail(remote, e))?;
        let mut to = std::fs::File::create(local).map_err(|e| fail(local, e))?;
        io::copy(&mut from, &mut to).map_err(|e| fail(local, e))?;
        Ok(())
    }
}
