//! A private MariaDB server for one test: Debian's `mariadbd`, its data directory made by
//! `mariadb-install-db` in a temp dir, on 127.0.0.1 with a free port and a socket in the temp
//! dir, with TLS (a throwaway certificate signed by a test CA, `ca.pem`). A database `hr` and a
//! user who owns it are made; dropped, the server stops.
//!
//! Starting fails the test with the reason (MariaDB missing, a bad start, no port): a test that
//! needs a server never passes without one.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user the tests log on as; it owns database `hr`.
pub const USER: &str = "datasync";
/// Its password: a test server's, on loopback only.
pub const PASSWORD: &str = "test-mariadb-secret";

/// A running MariaDB server.
pub struct Mariadb {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

/// A test server's sizes: the default redo log (96 MiB, preallocated) and buffer pool are
/// made for production; a CI disk that is nearly full refused the 96 MiB at start.
const SMALL: [&str; 2] = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"];

fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "MariaDB is not installed ({name} is not in /usr/sbin or /usr/bin). Install it with \
         `apt-get install -y mariadb-server`; `bash scripts/test` does that for you."
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

impl Mariadb {
    /// Makes a data directory and starts a server on it with TLS on.
    pub fn start() -> Mariadb {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let d = dir.path();
        super::slapd::write_certificates(d, super::slapd::ServerCertificate::CaSigned);
        // One install at a time: two bootstraps at once in one test binary were seen to fail
        // ("Installation of system tables failed"), one in a few runs.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
        let out = Command::new(binary("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .args(SMALL)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mariadb-install-db: {e}"));
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        drop(installing);
        let mut server = Mariadb {
            dir,
            port: free_port(),
            child: None,
        };
        server.launch();
        server.as_root(&format!(
            "CREATE DATABASE hr CHARACTER SET utf8mb4;
             CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
             GRANT ALL ON hr.* TO '{USER}'@'%';"
        ));
        server
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let child = Command::new(binary("mariadbd"))
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("mariadb.pid").display()))
            .arg(format!("--log-error={}", d.join("mariadb.log").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--ssl-ca={}", d.join("ca.pem").display()))
            .arg(format!("--ssl-cert={}", d.join("server.pem").display()))
            .arg(format!("--ssl-key={}", d.join("server.key").display()))
            .args(["--innodb-flush-log-at-trx-commit=0", "--skip-log-bin"])
            .args(SMALL)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mariadbd: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "mariadbd exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "mariadbd did not listen on 127.0.0.1:{} within 60 s; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mariadb.log")).unwrap_or_default()
    }

    /// The test CA, which signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The URL of database `hr` as the test user, without a password.
    pub fn url(&self) -> String {
        format!("mysql://{USER}@127.0.0.1:{}/hr", self.port)
    }

    /// Runs SQL as root through the server's socket, panicking with its message.
    fn as_root(&self, sql: &str) {
        let out = Command::new(binary("mariadb"))
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-u", "root", "-e", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run mariadb: {e}"));
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL statements in database `hr`, panicking with the server's message.
    pub fn execute(&self, sql: &str) {
        self.as_root(&format!("USE hr; {sql}"));
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: a clean shutdown.
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
