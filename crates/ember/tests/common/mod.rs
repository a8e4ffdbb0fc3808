//! Test harness: the real `ember` binary on a free port with a fresh data
//! directory, and a small blocking HTTP client for the Cinder API.
#![allow(dead_code)]

pub mod nbd_client;

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROJECT: &str = "3f0b1c9e5a7d4e2f9c8b7a6d5e4f3a2b";
pub const OTHER_PROJECT: &str = "9d8c7b6a5f4e4d3c2b1a0f9e8d7c6b5a";

pub struct Server {
    /// Extra `ember serve` arguments (default: `--auth noauth`).
    pub args: Vec<String>,
    pub port: u16,
    /// The NBD export server's port (kept across restarts).
    pub nbd_port: u16,
    pub data: tempfile::TempDir,
    /// The data directory, when not `<data>/data` (e.g. on a small file
    /// system of the test's own).
    pub data_dir_at: Option<PathBuf>,
    /// Extra environment for the next start.
    pub env: Vec<(String, String)>,
    /// Where volumes live.
    pub backend: TestBackend,
    /// Directories that live as long as the server (its config file).
    keep: Vec<tempfile::TempDir>,
    child: Option<Child>,
    pub http: reqwest::blocking::Client,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The backends the backend-agnostic HTTP suites run against: the
/// embedded qcow2 always, Ceph RBD when a test cluster is configured
/// (`EMBER_TEST_CEPH_CONF`, `EMBER_TEST_CEPH_POOL` default `rbd`); with
/// `EMBER_TEST_CEPH_REQUIRED=1` (CI) a missing cluster is a failure.
#[derive(Clone, Debug, PartialEq)]
pub enum TestBackend {
    Qcow2,
    /// An RBD namespace of its own in the test pool.
    Rbd {
        conf: PathBuf,
        pool: String,
        namespace: String,
    },
}

pub fn test_backends() -> Vec<TestBackend> {
    let mut out = vec![TestBackend::Qcow2];
    match std::env::var_os("EMBER_TEST_CEPH_CONF") {
        Some(conf) => out.push(TestBackend::Rbd {
            conf: PathBuf::from(conf),
            pool: std::env::var("EMBER_TEST_CEPH_POOL").unwrap_or_else(|_| "rbd".into()),
            namespace: format!("h-{}", uuid::Uuid::new_v4().simple()),
        }),
        None if std::env::var("EMBER_TEST_CEPH_REQUIRED").as_deref() == Ok("1") => {
            panic!("EMBER_TEST_CEPH_REQUIRED=1 but EMBER_TEST_CEPH_CONF is not set")
        }
        None => {}
    }
    out
}

impl TestBackend {
    /// The `[[backend]]` table for it (none for the embedded default).
    fn table(&self) -> Option<String> {
        match self {
            TestBackend::Qcow2 => None,
            TestBackend::Rbd {
                conf,
                pool,
                namespace,
            } => Some(format!(
                "[[backend]]\nname = \"rbd\"\ndriver = \"rbd\"\nceph_conf = {conf:?}\npool = {pool:?}\nnamespace = {namespace:?}\n"
            )),
        }
    }
}

impl Server {
    /// Ember in `noauth` mode (tokens are `user:project`).
    pub fn start() -> Server {
        Self::start_with(&["--auth", "noauth"])
    }

    /// Ember in `noauth` mode on `backend`.
    pub fn start_on(backend: &TestBackend) -> Server {
        let Some(table) = backend.table() else {
            return Self::start();
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("backends.toml");
        std::fs::write(&config, table).unwrap();
        let mut s = Self::start_with(&["--auth", "noauth", "--config", config.to_str().unwrap()]);
        s.keep.push(dir);
        s.backend = backend.clone();
        s
    }

    /// The backend's own audit of its data against the records, run in
    /// this process on the stopped server's data directory: empty when
    /// every record has its data and the other way round, nothing
    /// released is left behind and everything opens.
    pub fn audit(&self) -> Vec<String> {
        use ember_backend::VolumeBackend;
        let store: std::sync::Arc<dyn ember_store::MetadataStore> = std::sync::Arc::new(
            ember_store::sqlite::SqliteStore::open(&self.data_dir().join("ember.db")).unwrap(),
        );
        let backend: Box<dyn VolumeBackend> = match &self.backend {
            TestBackend::Qcow2 => Box::new(ember_backend::qcow2::Qcow2Backend::embedded(
                std::sync::Arc::new(
                    ember_storage::qcow2::Qcow2Driver::new(self.images_dir()).unwrap(),
                ),
                store,
            )),
            TestBackend::Rbd {
                conf,
                pool,
                namespace,
            } => Box::new(
                ember_backend::rbd::RbdBackend::connect(
                    "rbd",
                    &ember_backend::rbd::RbdSettings {
                        ceph_conf: Some(conf.clone()),
                        pool: pool.clone(),
                        namespace: Some(namespace.clone()),
                        user: None,
                        keyring: None,
                        native_attach: false,
                        secret_uuid: None,
                        node: "ember".into(),
                    },
                    store,
                )
                .unwrap(),
            ),
        };
        backend.audit().unwrap()
    }

    /// Ember with the given extra arguments.
    pub fn start_with(args: &[&str]) -> Server {
        Self::start_at(None, args)
    }

    /// Ember with extra arguments and environment.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_at_with_env(None, args, env)
    }

    /// Ember with its data directory at `data_dir` (logs stay in a
    /// temporary directory of their own).
    pub fn start_at(data_dir: Option<PathBuf>, args: &[&str]) -> Server {
        Self::start_at_with_env(data_dir, args, &[])
    }

    fn start_at_with_env(data_dir: Option<PathBuf>, args: &[&str], env: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut server = Server {
            args: args.iter().map(|a| a.to_string()).collect(),
            port: free_port(),
            nbd_port: free_port(),
            data,
            data_dir_at: data_dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            backend: TestBackend::Qcow2,
            keep: vec![],
            child: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("ember.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--nbd-listen",
                &format!("127.0.0.1:{}", self.nbd_port),
                "--data-dir",
            ])
            .arg(self.data_dir())
            .args(&self.args)
            .env("EMBER_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start ember");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.http.get(self.url("/")).send().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ember did not start; log:\n{}", self.log());
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir_at
            .clone()
            .unwrap_or_else(|| self.data.path().join("data"))
    }

    pub fn images_dir(&self) -> PathBuf {
        self.data_dir().join("images")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("ember.log")).unwrap_or_default()
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit;
    /// whether it did.
    pub fn stop_within(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        unsafe_sigterm(child.id());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL without waiting, usable while other threads use the server.
    pub fn kill_now(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_sigterm(child.id());
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the server again after `stop` or `kill`.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn v3(&self, path: &str) -> String {
        self.url(&format!("/v3/{PROJECT}{path}"))
    }

    /// Sends a request as `token` and returns (status, JSON body or Null).
    pub fn call(
        &self,
        method: &str,
        url: &str,
        token: &str,
        mv: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), url)
            .header("X-Auth-Token", token)
            .header("Accept", "application/json");
        if let Some(mv) = mv {
            rb = rb.header("OpenStack-API-Version", format!("volume {mv}"));
        }
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        // A failed request (the server gone, a connection reset) says
        // what the server logged.
        let resp = rb
            .send()
            .unwrap_or_else(|e| panic!("request: {e}\nserver log:\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A compute (Nova) API request: `url` absolute, raw JSON `body`, the
    /// microversion as `OpenStack-API-Version: compute <mv>`.
    pub fn compute(
        &self,
        method: &str,
        url: &str,
        token: &str,
        mv: Option<&str>,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), url)
            .header("X-Auth-Token", token);
        if let Some(mv) = mv {
            rb = rb.header("OpenStack-API-Version", format!("compute {mv}"));
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", "application/json").body(b);
        }
        // A failed request (the server gone, a connection reset) says
        // what the server logged.
        let resp = rb
            .send()
            .unwrap_or_else(|e| panic!("request: {e}\nserver log:\n{}", self.log()));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(
            method,
            &self.v3(path),
            &format!("admin:{PROJECT}"),
            Some("3.71"),
            body,
        )
    }

    pub fn create_volume(&self, size: u64) -> String {
        let (status, body) = self.admin(
            "POST",
            "/volumes",
            Some(json!({"volume": {"size": size, "name": "t"}})),
        );
        assert_eq!(status, 202, "{body}");
        let id = body["volume"]["id"].as_str().unwrap().to_string();
        self.wait_status("volumes", &id, "available");
        id
    }

    pub fn create_snapshot(&self, volume: &str) -> String {
        let (status, body) = self.admin(
            "POST",
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": volume, "name": "s"}})),
        );
        assert_eq!(status, 202, "{body}");
        let id = body["snapshot"]["id"].as_str().unwrap().to_string();
        self.wait_status("snapshots", &id, "available");
        id
    }

    /// Polls until the resource has `status` (panics on a terminal other
    /// status or after 30 s).
    pub fn wait_status(&self, collection: &str, id: &str, status: &str) -> Value {
        self.wait_status_as(&format!("admin:{PROJECT}"), PROJECT, collection, id, status)
    }

    /// Waits as the holder of `token`, in `project`.
    pub fn wait_status_as(
        &self,
        token: &str,
        project: &str,
        collection: &str,
        id: &str,
        status: &str,
    ) -> Value {
        let key = &collection[..collection.len() - 1];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.url(&format!("/v3/{project}/{collection}/{id}"));
            let (code, body) = self.call("GET", &url, token, Some("3.71"), None);
            let current = body[key]["status"].as_str().unwrap_or("").to_string();
            if code == 200 && current == status {
                return body[key].clone();
            }
            if Instant::now() > deadline {
                panic!("{key} {id} stuck: {code} {body}\nlog:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_gone(&self, collection: &str, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.admin("GET", &format!("/{collection}/{id}"), None).0 != 404 {
            assert!(
                Instant::now() < deadline,
                "{collection}/{id} never went away"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn write(&self, volume: &str, offset: u64, data: Vec<u8>) {
        let resp = self
            .http
            .put(self.v3(&format!("/volumes/{volume}/data?offset={offset}")))
            .header("X-Auth-Token", format!("admin:{PROJECT}"))
            .body(data)
            .send()
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            204,
            "{}",
            resp.text().unwrap_or_default()
        );
    }

    pub fn read(&self, collection: &str, id: &str, offset: u64, length: u64) -> Vec<u8> {
        let resp = self
            .http
            .get(self.v3(&format!(
                "/{collection}/{id}/data?offset={offset}&length={length}"
            )))
            .header("X-Auth-Token", format!("admin:{PROJECT}"))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.bytes().unwrap().to_vec()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && std::env::var_os("EMBER_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
            eprintln!("kept test data in {}", dir.keep().display());
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// `qemu-img check` on every image file in `dir`.
pub fn check_all_images(dir: &Path) -> usize {
    check_images(dir, false)
}

/// `qemu-img check` on every image file in `dir`; with `allow_leaks`,
/// leaked clusters (exit status 3: space wasted, no data wrong) pass,
/// anything else fails.
pub fn check_images(dir: &Path, allow_leaks: bool) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "qcow2") {
            let out = Command::new("qemu-img")
                .args(["check", "-f", "qcow2"])
                .arg(&path)
                .output()
                .unwrap();
            let leaks_only = out.status.code() == Some(3);
            assert!(
                out.status.success() || (allow_leaks && leaks_only),
                "qemu-img check {}: {}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    n
}

/// Names of image files, for orphan checks.
pub fn image_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".qcow2"))
        .collect();
    v.sort();
    v
}

/// A small file system of its own for a test's data directory: ext4 on a
/// loop device (root), so that ENOSPC is the kernel's, not a simulation.
pub struct SmallFs {
    pub mount: PathBuf,
    image: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    /// `None` (and a message saying why the caller skips) without root or
    /// without loop devices.
    pub fn ext4(size_mib: u64) -> Option<SmallFs> {
        Self::make("ext4", size_mib)
    }

    /// tmpfs of `size_mib`, the other kind of full a page cache gives.
    pub fn tmpfs(size_mib: u64) -> Option<SmallFs> {
        Self::make("tmpfs", size_mib)
    }

    fn make(kind: &str, size_mib: u64) -> Option<SmallFs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting a small {kind} file system needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        let image = dir.path().join("fs.img");
        std::fs::create_dir(&mount).unwrap();
        let ok = if kind == "ext4" {
            let f = std::fs::File::create(&image).unwrap();
            f.set_len(size_mib << 20).unwrap();
            drop(f);
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&image)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(&mount)
                    .status()
                    .is_ok_and(|s| s.success())
        } else {
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
                .arg(&mount)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok {
            eprintln!("SKIPPED: could not mount a small {kind} file system here");
            return None;
        }
        Some(SmallFs {
            mount,
            image,
            _dir: dir,
        })
    }

    /// Free bytes as an unprivileged writer sees them.
    pub fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.mount.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and a zeroed statvfs to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("EMBER_TEST_KEEP").is_some() {
            eprintln!(
                "kept the small file system mounted at {}",
                self.mount.display()
            );
            std::mem::forget(std::mem::replace(
                &mut self._dir,
                tempfile::tempdir().unwrap(),
            ));
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// An os-brick style connector.
pub fn connector(host: &str) -> Value {
    json!({"host": host, "ip": "127.0.0.1", "platform": "x86_64", "os_type": "linux", "multipath": false, "initiator": "iqn.2026-11.test:h"})
}

/// Creates an attachment with a connector (3.54, so `mode` is allowed) and
/// completes it; returns (attachment id, NBD URI).
pub fn attach(s: &Server, volume: &str, mode: &str) -> (String, String) {
    let (st, body) = s.call(
        "POST",
        &s.v3("/attachments"),
        &format!("member:{PROJECT}"),
        Some("3.54"),
        Some(json!({"attachment": {"volume_uuid": volume, "instance_uuid": uuid::Uuid::new_v4().to_string(), "connector": connector("host-a"), "mode": mode}})),
    );
    assert_eq!(st, 200, "{body}");
    let a = &body["attachment"];
    assert_eq!(a["status"], "attaching", "{body}");
    assert_eq!(a["attach_mode"], mode);
    let info = &a["connection_info"];
    assert_eq!(info["driver_volume_type"], "nbd");
    assert_eq!(info["port"], s.nbd_port);
    let id = a["id"].as_str().unwrap().to_string();
    let (st, body) = s.call(
        "POST",
        &s.v3(&format!("/attachments/{id}/action")),
        &format!("member:{PROJECT}"),
        Some("3.44"),
        Some(json!({"os-complete": {}})),
    );
    assert_eq!(st, 204, "{body}");
    (id, info["uri"].as_str().unwrap().to_string())
}

/// A small seeded xorshift generator: the same schedule on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.index(xs.len())]
    }
}
