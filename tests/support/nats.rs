//! A private nats-server for tests that must stop and restart NATS without
//! disturbing anyone else using the machine's shared server.
#![allow(dead_code)]

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private nats-server, killed when dropped.
pub struct OwnNats {
    port: u16,
    store: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnNats {
    pub fn start(port: u16, store: &std::path::Path) -> OwnNats {
        let mut nats = OwnNats {
            port,
            store: store.to_owned(),
            child: None,
        };
        nats.spawn();
        nats
    }

    pub fn spawn(&mut self) {
        let child = std::process::Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start /usr/sbin/nats-server");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

