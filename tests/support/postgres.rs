//! A private PostgreSQL server for one test: Debian's PostgreSQL, `initdb` into a temp dir,
//! started on 127.0.0.1 with a free port, SCRAM passwords and TLS (a throwaway certificate
//! signed by a test CA, `ca.pem`). Dropped, it stops the server.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
//! `postgres` user (the Debian package makes it), and its temp dir is handed to that user.
//! Starting fails the test with the reason (PostgreSQL missing, `initdb` failing, no port): a
//! test that needs a server never passes without one.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser a test server has.
pub const USER: &str = "datasync";
/// Its password: a test server's, on loopback only.
pub const PASSWORD: &str = "test-pg-secret";

/// A running PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DATASYNC_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; set \
             DATASYNC_PG_BIN to its bin directory). Install it with `apt-get install -y \
             postgresql`; `bash scripts/test` does that for you."
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

/// The user and group id the server runs as: `postgres` when the tests run as root.
fn server_ids() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run id: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!("there is no postgres user to run PostgreSQL as (the tests run as root)")
            })
    };
    Some((id("-u"), id("-g")))
}

fn as_server(command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_ids() {
        command.uid(uid).gid(gid);
    }
    command
}

fn give_to_server(path: &Path) {
    if let Some((uid, gid)) = server_ids() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("cannot give {} to postgres: {e}", path.display()));
    }
}

impl Postgres {
    /// Initialises and starts a server with TLS on.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        super::slapd::write_certificates(dir.path(), super::slapd::ServerCertificate::CaSigned);
        give_to_server(dir.path());
        for f in ["ca.pem", "server.pem", "server.key"] {
            give_to_server(&dir.path().join(f));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap_or_else(|e| panic!("chmod server.key: {e}"));
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap_or_else(|e| panic!("cannot write pw: {e}"));
        give_to_server(&pwfile);
        let data = dir.path().join("data");
        let out = as_server(&mut Command::new(bin_dir().join("initdb")))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Postgres {
            dir,
            port: free_port(),
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("postgres.log"))
            .unwrap_or_else(|e| panic!("cannot create postgres.log: {e}"));
        give_to_server(&d.join("postgres.log"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share postgres.log: {e}"));
        let child = as_server(&mut Command::new(bin_dir().join("postgres")))
            .arg("-D")
            .arg(d.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", d.display()))
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", d.join("server.pem").display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", d.join("server.key").display()))
            .args(["-c", "fsync=off"])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run postgres: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "postgres exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.client().is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "postgres did not answer on 127.0.0.1:{} within 30 s; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The test CA, which signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The URL of database `db` on this server, as the superuser, without a password.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A plain connection to database `postgres` as the superuser.
    pub fn client(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname("postgres")
            .connect(postgres::NoTls)
    }

    /// Runs SQL statements on database `postgres`, panicking with the server's message.
    pub fn execute(&self, sql: &str) {
        let mut client = self.client().unwrap_or_else(|e| panic!("connect: {e}"));
        client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: the fast shutdown, which ends the server's own processes too.
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
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
