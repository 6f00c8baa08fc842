//! Finding and running the examples (shared by the example test crates).

use std::io::Read;
use std::path::PathBuf;

/// The built example `name`, next to the test binary.
#[allow(dead_code)]
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run the whole `cargo test` (it builds the examples) or `cargo build --examples` first",
        p.display()
    );
    p
}

/// Waits for a child with a deadline (killed after it); returns success and its output.
pub fn finish(mut child: std::process::Child, secs: u64) -> (bool, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (status.is_some_and(|s| s.success()), text)
}
