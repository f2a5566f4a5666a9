//! exchange-sim: an Exchange stand-in on loopback for tests and newcomers.

fn main() {
    eprintln!("exchange-sim: not built yet");
    std::process::exit(2);
}
