//! The release exchange-sim for the benchmarks that need an Exchange
//! server, included by path (`#[path = "support/sim.rs"] mod sim;`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub type Error = Box<dyn std::error::Error>;

/// The account and password the sim accepts.
pub const ACCOUNT: &str = "svc@example.com";
pub const PASSWORD: &str = "bench-password";

/// Kills the sim when dropped.
pub struct Sim(std::process::Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts target/release/exchange-sim on a free loopback port with `args`,
/// its CA written to `dir/ca.pem`; returns it and its port.
pub fn start(dir: &std::path::Path, args: &[&str]) -> Result<(Sim, u16), Error> {
    let exe = std::env::current_exe()?;
    // target/release/deps/BENCH-HASH -> target/release/exchange-sim
    let sim_path = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("exchange-sim"))
        .ok_or("no target directory")?;
    let mut child = Command::new(&sim_path)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .args(["--account", ACCOUNT, "--password-env", "BENCH_SIM_PASSWORD"])
        .arg("--write-ca")
        .arg(dir.join("ca.pem"))
        .env("BENCH_SIM_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "start {}: {e} (build it: cargo build --release)",
                sim_path.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let sim = Sim(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("unexpected exchange-sim line {line:?}"))?;
    Ok((sim, port))
}
