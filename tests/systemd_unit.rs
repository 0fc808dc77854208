//! The shipped systemd unit passes `systemd-analyze verify` and keeps a low exposure score.

use std::process::Command;

fn systemd_analyze_available() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unit_verifies_and_is_hardened() {
    if !systemd_analyze_available() {
        eprintln!("systemd-analyze is not installed; skipping the unit checks");
        return;
    }
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/wfdb.service"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = unit.replace("/usr/local/bin/wfdb", env!("CARGO_BIN_EXE_wfdb"));
    let path = dir.path().join("wfdb.service");
    std::fs::write(&path, unit).unwrap();

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in: {text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(
        score <= 1.0,
        "exposure {score} is higher than the 1.0 this unit reaches: {line}"
    );
}

/// The unit's sandbox must leave what the daemon reads at run time visible: its watch limits
/// in /proc/sys/fs/inotify (hidden by `ProcSubset=pid`), and its configuration folder.
#[test]
fn unit_keeps_inotify_limits_readable_and_names_its_configuration_folder() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/wfdb.service"))
            .unwrap();
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        !settings.iter().any(|l| l.starts_with("ProcSubset=pid")),
        "ProcSubset=pid hides /proc/sys/fs/inotify from the daemon"
    );
    assert!(settings.contains(&"ConfigurationDirectory=wfdb"));
    assert!(settings.contains(&"User=wfdb"));
}

/// The sysusers.d file creates the `wfdb` account the unit runs as.
#[test]
fn sysusers_file_creates_the_service_account() {
    let available = Command::new("systemd-sysusers")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-sysusers is not installed; skipping the sysusers check");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/systemd/wfdb.sysusers"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-sysusers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("wfdb:"))
        .unwrap_or_else(|| panic!("no wfdb account in {passwd}"));
    assert!(
        entry.ends_with(":/var/lib/wfdb:/usr/sbin/nologin"),
        "{entry}"
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("wfdb:")), "{group}");
}
