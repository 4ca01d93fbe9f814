//! A real nginx (Debian's package) started per test, for forward-auth tests.
//!
//! The test supplies the `server { ... }` block; `{port}` in it is replaced by the port nginx
//! listens on. Everything nginx writes (pid, logs, temp files) stays in a temp directory; the
//! process runs in the foreground without a master process and is killed on drop.

use std::path::PathBuf;
use std::time::Duration;

pub struct Nginx {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// Where Debian installs nginx; `TW_NGINX` names another binary.
pub fn nginx_binary() -> PathBuf {
    std::env::var_os("TW_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

impl Nginx {
    /// Starts nginx with `server_block` (with `{port}` placeholders) and waits until it accepts
    /// connections. Panics with a clear message when nginx is not installed.
    pub async fn start(server_block: &str) -> Nginx {
        let bin = nginx_binary();
        assert!(
            bin.exists(),
            "nginx not found at {} — run scripts/test.sh (it installs Debian's nginx) or set TW_NGINX",
            bin.display()
        );
        let port = crate::free_port();
        let dir = tempfile::tempdir().expect("nginx temp dir");
        let d = dir.path().display().to_string();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {server}
}}
"#,
            server = server_block.replace("{port}", &port.to_string())
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = tokio::process::Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nginx");
        let nginx = Nginx { child, dir, port };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not start; its error log:\n{}", nginx.error_log());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
