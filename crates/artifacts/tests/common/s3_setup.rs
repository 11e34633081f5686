//! The `s3` publisher's tests: their configuration, source trees, a client of the test S3
//! server, and a check of what it holds.

use std::path::Path;

use gate_artifacts::S3Config;
use gate_artifacts::manifest::hash_file;
use gate_test_harness::S3Server;

/// The access key the test servers accept.
pub const KEY: &str = "AKIDGATETEST";
/// The secret key the test servers accept.
pub const SECRET: &str = "gate-test-secret-key-7f3a";

/// A config publishing `source` to bucket `artifacts` of `s3` under `prefix`, with the
/// server's credentials in the config.
pub fn config(s3: &S3Server, source: &Path, prefix: &str) -> S3Config {
    config_at(
        &s3.endpoint(),
        source,
        prefix,
        Some((s3.access_key(), s3.secret_key())),
    )
}

/// A config publishing `source` to bucket `artifacts` at `endpoint`; without `keys`, the
/// config names no credentials.
pub fn config_at(
    endpoint: &str,
    source: &Path,
    prefix: &str,
    keys: Option<(&str, &str)>,
) -> S3Config {
    let credentials = match keys {
        Some((access, secret)) => format!(
            "access_key = {{ secret = \"{access}\" }}\nsecret_key = {{ secret = \"{secret}\" }}"
        ),
        None => String::new(),
    };
    let toml = format!(
        r#"
source = "{}"
on = "local"
bucket = "artifacts"
prefix = "{prefix}"
endpoint = "{endpoint}"
{credentials}
multipart_threshold_mb = 5
part_size_mb = 5
backoff_ms = 10
"#,
        source.display(),
    );
    gate_core::BackendConfig::from_toml("publisher", "s3", &toml)
        .unwrap()
        .parse()
        .unwrap()
}

/// A source tree: `small` files of 10 KB and one 12 MB file (three parts).
pub fn source(dir: &Path, small: usize) {
    std::fs::create_dir_all(dir.join("logs/deep")).unwrap();
    for n in 0..small {
        std::fs::write(
            dir.join(format!("logs/f{n:03}.log")),
            format!("{n}\n").repeat(2500),
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("logs/deep/big.bin"), big).unwrap();
}

/// Every object under `prefix` equals its source file (none is partial); gives how many
/// there are, the manifest aside.
pub fn assert_objects_whole(s3: &S3Server, source: &Path, prefix: &str) -> usize {
    let keys = s3.keys("artifacts");
    let mut seen = 0;
    for key in keys.iter().filter(|k| k.starts_with(prefix)) {
        let relative = &key[prefix.len()..];
        if relative == "gate-manifest.json" {
            continue;
        }
        let stored = hash_file(&s3.object_path("artifacts", key)).unwrap();
        assert_eq!(
            stored,
            hash_file(&source.join(relative)).unwrap(),
            "{key} is partial"
        );
        seen += 1;
    }
    seen
}

/// A client of bucket `artifacts` of `s3`, signing with its credentials: to read back
/// what the server keeps, through its own S3 API.
pub fn client(s3: &S3Server) -> Box<s3::Bucket> {
    let credentials = s3::creds::Credentials::new(
        Some(s3.access_key()),
        Some(s3.secret_key()),
        None,
        None,
        None,
    )
    .unwrap();
    let region = s3::Region::Custom {
        region: "us-east-1".into(),
        endpoint: s3.endpoint(),
    };
    s3::Bucket::new("artifacts", region, credentials)
        .unwrap()
        .with_path_style()
}
