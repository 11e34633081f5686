//! A real S3 server on 127.0.0.1: `s3s-fs` (objects as files in a temporary directory,
//! SigV4 authentication with one access key), run in-process on its own thread.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::error::{HarnessError, Result, io};

/// An S3 server on 127.0.0.1 (an ephemeral port) storing objects under a temporary
/// directory: bucket `b`, key `k` is the file `<dir>/b/k`. Path-style requests, region
/// free (any region name signs), one access key. Stops and removes its directory on drop.
///
/// ```no_run
/// let s3 = gate_test_harness::S3Server::start("AKIDTEST", "test-secret-key")?;
/// s3.create_bucket("logs")?;
/// let endpoint = s3.endpoint(); // http://127.0.0.1:PORT
/// # Ok::<(), gate_test_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct S3Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    access_key: String,
    secret_key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server that accepts requests signed with `access_key` and `secret_key`.
    pub fn start(access_key: &str, secret_key: &str) -> Result<S3Server> {
        let dir = tempfile::Builder::new()
            .prefix("gate-s3-")
            .tempdir()
            .map_err(io("creating the S3 server's directory"))?;
        let fs = s3s_fs::FileSystem::new(dir.path()).map_err(|e| HarnessError::Command {
            command: "s3s-fs".into(),
            detail: format!("{e:?}"),
        })?;
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
            builder.build()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(io("binding an S3 server on 127.0.0.1"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("configuring the S3 server's socket"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the S3 server's port"))?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(io("starting the S3 server's runtime"))?;
        let thread = std::thread::Builder::new()
            .name(format!("s3-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let http = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    loop {
                        let socket = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((socket, _)) => socket,
                                Err(_) => continue,
                            },
                            _ = &mut stopped => break,
                        };
                        let conn = http
                            .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                            .into_owned();
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                });
                runtime.shutdown_background();
            })
            .map_err(io("starting the S3 server thread"))?;
        Ok(S3Server {
            addr,
            dir,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, the endpoint to configure clients with.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access key it accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key it accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The directory holding the buckets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates bucket `name` (a directory, as s3s-fs keeps them).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).map_err(io(format!("creating bucket {name}")))
    }

    /// Where object `key` of `bucket` is stored (whether or not it exists).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join(bucket).join(key)
    }

    /// The keys of `bucket` (sorted), read from the server's directory: what a reader
    /// listing the bucket sees, without the server's own bookkeeping files.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let root = self.dir.path().join(bucket);
        let mut keys = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(&root) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.starts_with(".tmp.") {
                        keys.push(relative.to_string_lossy().into_owned());
                    }
                }
            }
        }
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
