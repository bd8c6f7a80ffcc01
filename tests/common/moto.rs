//! A real S3 server on 127.0.0.1 for the shared-cache tests: moto's (`moto[server]`, installed
//! by `.ci/run` into `target/moto-venv`), which implements S3's conditional writes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The moto executable: `$RENDER_MOTO`, else the venv `.ci/run` makes, else `moto_server`.
pub fn executable() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("RENDER_MOTO") {
        return Ok(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    Err(
        "no moto server: python3 -m venv target/moto-venv && target/moto-venv/bin/pip install 'moto[server]==5.2.5' (or set RENDER_MOTO)"
            .into(),
    )
}

/// A moto S3 server on a free port; killed when dropped.
pub struct Moto {
    child: Option<Child>,
    port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let exe = executable().unwrap_or_else(|e| panic!("{e}"));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let moto = Moto {
            child: Some(child),
            port,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` and returns the cache URL of a prefix in it.
    pub fn bucket(&self, bucket: &str) -> String {
        let status = raw(&self.endpoint(), "PUT", &format!("/{bucket}"), b"");
        assert!(status < 300, "creating bucket {bucket}: {status}");
        format!("s3://{bucket}/studio-cache")
    }

    /// The variables the shared cache reads its endpoint and credentials from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Overwrites an object in the bucket, signed as any client would: to damage one.
    pub fn overwrite(&self, bucket: &str, key: &str, bytes: &[u8]) {
        use object_store::ObjectStoreExt;
        let (runtime, _) = client();
        let store = self.client(bucket);
        runtime
            .block_on(store.put(&object_store::path::Path::from(key), bytes.to_vec().into()))
            .unwrap_or_else(|e| panic!("overwriting {key}: {e}"));
    }

    /// The keys under `prefix` in the bucket (a plain ListObjectsV2).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = raw_body(
            &self.endpoint(),
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
        );
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The content of one object, signed as any client would; `None` when it is not there.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt;
        let (runtime, _) = client();
        let store = self.client(bucket);
        runtime.block_on(async {
            match store.get(&object_store::path::Path::from(key)).await {
                Ok(got) => Some(got.bytes().await.unwrap().to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("reading {key}: {e}"),
            }
        })
    }

    fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client() -> (tokio::runtime::Runtime, reqwest::Client) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (runtime, super::sandbox::client())
}

fn raw(endpoint: &str, method: &str, path: &str, body: &[u8]) -> u16 {
    let (runtime, client) = client();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    runtime.block_on(async {
        client
            .request(method, format!("{endpoint}{path}"))
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

fn raw_body(endpoint: &str, path: &str) -> String {
    let (runtime, client) = client();
    runtime.block_on(async {
        client
            .get(format!("{endpoint}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}
